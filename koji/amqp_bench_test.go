package koji_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji"
)

// BenchmarkParseMessage parses a build.state.change message strictly.
// The yardstick, measured in the same run, is encoding/json.Unmarshal of
// the same bytes into a map (no checks at all); the ratio is reported as
// x-yardstick.
func BenchmarkParseMessage(b *testing.B) {
	body := mustJSON(b, stateChange(1478312, "chromium", "80.0.3987.132", "1.fc33", 1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := time.Now()
	for range b.N {
		if _, err := koji.ParseMessage(koji.MessageFilter{}, topicState, koji.SchemaBuildStateChange, "application/json", body); err != nil {
			b.Fatal(err)
		}
	}
	parse := time.Since(start)
	b.StopTimer()
	// The yardstick, the same number of times: encoding/json into a map.
	start = time.Now()
	for range b.N {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(parse)/float64(time.Since(start)), "x-yardstick")
}

// BenchmarkImportDuplicate is the cost of a redelivered or duplicate
// announcement: the build id lookup in the importer's state, no hub call.
func BenchmarkImportDuplicate(b *testing.B) {
	e := newKojiEnv(b)
	id, _ := e.hub.AddHelloBuild(b, "", 1_763_000_000.5)
	if _, err := e.importer.Import(b.Context(), id, "", "bench"); err != nil {
		b.Fatal(err)
	}
	calls := len(e.hub.Calls())
	b.ResetTimer()
	for range b.N {
		st, err := e.importer.Import(b.Context(), id, "hello-1.0-1", "bench")
		if err != nil || st != koji.AlreadyHandled {
			b.Fatal(st, err)
		}
	}
	b.StopTimer()
	if len(e.hub.Calls()) != calls {
		b.Fatalf("duplicate imports called the hub %d times", len(e.hub.Calls())-calls)
	}
}
