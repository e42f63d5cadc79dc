package koji

import (
	"context"
	"sync"
)

// Listener is `skyline koji-listen`: the AMQP consumer and the poller,
// both feeding one Importer. The consumer's every (re)subscription
// triggers a poll, which catches builds announced while it was away.
type Listener struct {
	Consumer *Consumer // nil: polling only
	Poller   *Poller
}

// Run runs both until ctx is done.
func (l *Listener) Run(ctx context.Context) error {
	trigger := make(chan struct{}, 1)
	kick := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	if l.Consumer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[0] = l.Consumer.Run(ctx, kick)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[1] = l.Poller.Run(ctx, trigger)
	}()
	wg.Wait()
	if errs[0] != nil {
		return errs[0]
	}
	return errs[1]
}
