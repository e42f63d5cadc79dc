package koji

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// FedoraBrokerURL is Fedora's public fedora-messaging broker
// (fedora-messaging docs, "Fedora's public broker"): AMQP over TLS with a
// client certificate, vhost /public_pubsub.
const FedoraBrokerURL = "amqps://rabbitmq.fedoraproject.org/%2Fpublic_pubsub"

// AMQPConfig configures a Consumer. Zero fields take the defaults.
type AMQPConfig struct {
	// URL is the broker, with the vhost. Default FedoraBrokerURL.
	URL string
	// TLS carries the client certificate (Fedora's public one is
	// fedora-cert.pem/fedora-key.pem of fedora-messaging) and the broker's
	// CA. Required for amqps URLs.
	TLS *tls.Config
	// Exchange is the topic exchange to bind to. Default amq.topic.
	Exchange string
	// Filter selects our messages; its Topics are the binding keys.
	Filter MessageFilter
	// Prefetch bounds unacknowledged deliveries. Default 4.
	Prefetch int
	// MinBackoff and MaxBackoff bound the wait between reconnections (and
	// before a delivery is requeued after a transient failure); it doubles
	// from MinBackoff up to MaxBackoff. Defaults 1 s and 2 minutes.
	MinBackoff, MaxBackoff time.Duration
	// Heartbeat is the AMQP heartbeat. Default 30 s.
	Heartbeat time.Duration
	// Logger receives one line per connection event and per message
	// that is not imported. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, counts deliveries and tracks the connection.
	Metrics *ListenMetrics
}

// Consumer reads Koji's fedora-messaging messages from a broker and
// imports the builds they announce. The queue is server-named, exclusive
// and auto-delete, as Fedora's public broker allows (and requires) for
// anonymous consumers, so messages sent while the consumer is
// disconnected are lost: the Poller catches those builds.
type Consumer struct {
	cfg AMQPConfig
	im  *Importer
}

// NewConsumer returns a consumer feeding im.
func NewConsumer(cfg AMQPConfig, im *Importer) (*Consumer, error) {
	if cfg.URL == "" {
		cfg.URL = FedoraBrokerURL
	}
	uri, err := amqp.ParseURI(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("koji: broker URL: %w", err)
	}
	if uri.Scheme == "amqps" && cfg.TLS == nil {
		return nil, fmt.Errorf("koji: broker %s needs a TLS client configuration", cfg.URL)
	}
	if cfg.Exchange == "" {
		cfg.Exchange = "amq.topic"
	}
	cfg.Filter = cfg.Filter.withDefaults()
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 4
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(2*time.Minute, cfg.MinBackoff)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{cfg: cfg, im: im}, nil
}

// Run consumes until ctx is done, reconnecting with bounded backoff. It
// calls connected (if not nil) each time it is subscribed again, so the
// poller can look for builds announced while it was not.
func (c *Consumer) Run(ctx context.Context, connected func()) error {
	wait := c.cfg.MinBackoff
	for {
		start := time.Now()
		err := c.session(ctx, connected)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > c.cfg.MaxBackoff {
			wait = c.cfg.MinBackoff // it was up for a while: not a crash loop
		}
		c.cfg.Logger.Warn("koji: broker connection lost; reconnecting", "url", redactURL(c.cfg.URL), "wait", wait, "err", err)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		wait = min(2*wait, c.cfg.MaxBackoff)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func redactURL(u string) string {
	if uri, err := amqp.ParseURI(u); err == nil {
		uri.Password = ""
		return uri.String()
	}
	return "(unparsable)"
}

// session is one connection: subscribe, then handle deliveries until the
// connection or ctx ends.
func (c *Consumer) session(ctx context.Context, connected func()) error {
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		// Fedora's broker authenticates the client certificate (SASL EXTERNAL).
		SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
		TLSClientConfig: c.cfg.TLS,
		Heartbeat:       c.cfg.Heartbeat,
		Dial:            amqp.DefaultDial(30 * time.Second),
		Properties:      amqp.Table{"connection_name": "skyline koji-listen"},
	})
	if err != nil {
		return fmt.Errorf("koji: connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("koji: channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("koji: qos: %w", err)
	}
	// Server-named ("amq.gen-..."), exclusive, auto-delete: the only
	// queues the public broker's read-only users may declare.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("koji: declare queue: %w", err)
	}
	for _, topic := range c.cfg.Filter.Topics() {
		if err := ch.QueueBind(q.Name, topic, c.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("koji: bind %s: %w", topic, err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", false, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("koji: consume: %w", err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	c.cfg.Logger.Info("koji: subscribed to the broker", "url", redactURL(c.cfg.URL), "queue", q.Name, "topics", strings.Join(c.cfg.Filter.Topics(), ","))
	c.cfg.Metrics.setConnected(true)
	defer c.cfg.Metrics.setConnected(false)
	if connected != nil {
		connected()
	}
	wait := c.cfg.MinBackoff
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-closed:
			if e == nil {
				return amqp.ErrClosed
			}
			return e
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("koji: delivery channel closed")
			}
			if c.handle(ctx, d) {
				wait = c.cfg.MinBackoff
				continue
			}
			// Transient failure: wait, then requeue, so a hub outage is
			// not a hot loop of redeliveries.
			sleepCtx(ctx, wait)
			wait = min(2*wait, c.cfg.MaxBackoff)
			if err := d.Nack(false, true); err != nil {
				return fmt.Errorf("koji: nack: %w", err)
			}
		}
	}
}

// handle processes one delivery and acknowledges it unless the import
// failed transiently (then it returns false and the caller requeues it).
// Acknowledging happens only after the import is durable.
func (c *Consumer) handle(ctx context.Context, d amqp.Delivery) bool {
	lg := c.cfg.Logger.With("topic", d.RoutingKey, "message_id", d.MessageId, "redelivered", d.Redelivered)
	schema, _ := d.Headers["fedora_messaging_schema"].(string)
	a, err := ParseMessage(c.cfg.Filter, d.RoutingKey, schema, d.ContentType, d.Body)
	m := c.cfg.Metrics
	switch {
	case errors.Is(err, ErrNotComplete):
		m.message("not-complete")
		lg.Debug("koji: message ignored: not a completed build", "err", err)
	case errors.Is(err, ErrOtherInstance):
		m.message("other-instance")
		lg.Info("koji: message ignored: another Koji instance", "err", err)
	case errors.Is(err, ErrUnknownSchema):
		m.message("unknown-schema")
		lg.Warn("koji: message refused: unknown schema", "schema", schema, "err", err)
	case err != nil:
		m.message("malformed")
		lg.Warn("koji: message refused: malformed", "bytes", len(d.Body), "err", err)
	default:
		st, err := c.im.Import(ctx, a.BuildID, a.NVR, "amqp")
		switch {
		case errors.Is(err, ErrTransient):
			m.message("requeued")
			lg.Warn("koji: import failed transiently; message requeued", "build_id", a.BuildID, "nvr", a.NVR, "err", err)
			return false
		case err != nil:
			m.message("not-imported")
			lg.Error("koji: build not imported", "build_id", a.BuildID, "nvr", a.NVR, "source", "amqp", "err", err)
		default:
			m.message("handled")
			lg.Info("koji: message handled", "build_id", a.BuildID, "nvr", a.NVR, "status", st.String())
		}
	}
	if err := d.Ack(false); err != nil {
		lg.Warn("koji: ack failed; the broker will redeliver", "err", err)
	}
	return true
}
