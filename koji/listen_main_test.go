package koji_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji/rabbittest"
)

// broker is the one real RabbitMQ of this test binary (Erlang starts in
// seconds, not milliseconds): koji/rabbittest, Fedora's public broker setup.
var broker *rabbittest.Broker

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "koji-rabbitmq-")
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
	broker, err = rabbittest.Start(dir, out, 90*time.Second)
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		os.Stderr.Write(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "koji tests need a real RabbitMQ:", err)
		return 1
	}
	defer broker.Stop()
	return m.Run()
}
