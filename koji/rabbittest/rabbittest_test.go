package rabbittest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var broker *Broker

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rabbittest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := os.Create(filepath.Join(dir, "broker-output.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer out.Close()
	broker, err = Start(dir, out, 90*time.Second)
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		os.Stderr.Write(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer broker.Stop()
	return m.Run()
}

// TestListenerIdentityCannotPublish: the read-only identity gets
// ACCESS_REFUSED (403) when it publishes to amq.topic, as on Fedora's
// public broker, while the publisher identity's publish is confirmed.
func TestListenerIdentityCannotPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := broker.PublishAs(ctx, ListenerUser, "org.fedoraproject.prod.buildsys.tag", "", "m1", []byte("{}"))
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Fatalf("publish as %s: %v, want access refused (403)", ListenerUser, err)
	}
	if err := broker.Publish(ctx, "org.fedoraproject.prod.buildsys.tag", "", "m2", []byte("{}")); err != nil {
		t.Fatalf("publish as %s: %v", PublisherUser, err)
	}
}

// TestListenerIdentityQueues: the listener may declare a server-named,
// exclusive, auto-delete queue and bind it to amq.topic, receives what is
// published there, and may not declare a queue of its own naming.
func TestListenerIdentityQueues(t *testing.T) {
	c, err := broker.Dial(ListenerUser)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declare server-named queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "org.fedoraproject.prod.#", "amq.topic", false, nil); err != nil {
		t.Fatalf("bind: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.Publish(ctx, "org.fedoraproject.prod.buildsys.tag", "s", "m3", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	d, err := ch.Consume(q.Name, "", false, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-d:
		if string(m.Body) != `{"x":1}` || m.MessageId != "m3" || m.Headers["fedora_messaging_schema"] != "s" {
			t.Fatalf("got %q id %q headers %v", m.Body, m.MessageId, m.Headers)
		}
		m.Ack(false)
	case <-ctx.Done():
		t.Fatal("no message")
	}
	ch2, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch2.QueueDeclare("my-queue", false, true, true, false, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Fatalf("declare my-queue: %v, want access refused", err)
	}
}

// TestStrangerRefused: a certificate of the right CA whose common name has
// no account is refused at login.
func TestStrangerRefused(t *testing.T) {
	c, err := broker.Dial(StrangerUser)
	if err == nil {
		c.Close()
		t.Fatal("stranger connected")
	}
}
