package koji_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/koji"
)

// TestParseMessage: the schema's example messages parse to the build they
// announce; each way a message can be foreign or broken gets its own
// error.
func TestParseMessage(t *testing.T) {
	good := mustJSON(t, stateChange(1478312, "chromium", "80.0.3987.132", "1.fc33", 1))
	var f koji.MessageFilter
	a, err := koji.ParseMessage(f, topicState, koji.SchemaBuildStateChange, "application/json", good)
	if err != nil || a.BuildID != 1478312 || a.NVR != "chromium-80.0.3987.132-1.fc33" || a.Kind != "state-change" {
		t.Fatalf("good state change: %+v %v", a, err)
	}
	a, err = koji.ParseMessage(f, topicTag, koji.SchemaTag, "", mustJSON(t, tagBody(7, "hello", "1.0", "1")))
	if err != nil || a.BuildID != 7 || a.NVR != "hello-1.0-1" || a.Kind != "tag" {
		t.Fatalf("good tag: %+v %v", a, err)
	}
	stg := koji.MessageFilter{TopicPrefix: "org.fedoraproject.stg"}
	if a, err := koji.ParseMessage(stg, "org.fedoraproject.stg.buildsys.build.state.change", koji.SchemaBuildStateChange, "", good); err != nil || a.BuildID != 1478312 {
		t.Fatalf("staging filter: %+v %v", a, err)
	}
	mod := func(k string, v any) []byte {
		m := stateChange(1, "hello", "1", "1", 1)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return mustJSON(t, m)
	}
	cases := []struct {
		name, topic, schema, ct string
		body                    []byte
		want                    error
	}{
		{"staging topic", "org.fedoraproject.stg.buildsys.build.state.change", koji.SchemaBuildStateChange, "", good, koji.ErrOtherInstance},
		{"other instance", topicState, koji.SchemaBuildStateChange, "", mod("instance", "ppc"), koji.ErrOtherInstance},
		{"other instance tag", topicTag, koji.SchemaTag, "", mustJSON(t, map[string]any{"build_id": 1, "instance": "s390", "name": "a", "version": "1", "release": "1"}), koji.ErrOtherInstance},
		{"other topic", "org.fedoraproject.prod.buildsys.untag", koji.SchemaTag, "", good, koji.ErrUnknownSchema},
		{"no buildsys", "org.fedoraproject.prod.bodhi.update", koji.SchemaTag, "", good, koji.ErrUnknownSchema},
		{"schema of the other topic", topicState, koji.SchemaTag, "", good, koji.ErrUnknownSchema},
		{"content type", topicState, koji.SchemaBuildStateChange, "text/plain", good, koji.ErrMessageMalformed},
		{"array", topicState, koji.SchemaBuildStateChange, "", []byte(`[1]`), koji.ErrMessageMalformed},
		{"trailing", topicState, koji.SchemaBuildStateChange, "", append(append([]byte{}, good...), '{', '}'), koji.ErrMessageMalformed},
		{"float id", topicState, koji.SchemaBuildStateChange, "", mod("build_id", 1.5), koji.ErrMessageMalformed},
		{"null id", topicState, koji.SchemaBuildStateChange, "", mod("build_id", nil), koji.ErrMessageMalformed},
		{"negative id", topicState, koji.SchemaBuildStateChange, "", mod("build_id", -4), koji.ErrMessageMalformed},
		{"slash in name", topicState, koji.SchemaBuildStateChange, "", mod("name", "../etc"), koji.ErrMessageMalformed},
		{"new as string", topicState, koji.SchemaBuildStateChange, "", mod("new", "1"), koji.ErrMessageMalformed},
		{"deep", topicState, koji.SchemaBuildStateChange, "", []byte(strings.Repeat("[", 100) + strings.Repeat("]", 100)), koji.ErrMessageMalformed},
		{"building", topicState, koji.SchemaBuildStateChange, "", mod("new", 0), koji.ErrNotComplete},
		{"other attribute", topicState, koji.SchemaBuildStateChange, "", mod("attribute", "volume"), koji.ErrNotComplete},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := koji.ParseMessage(f, c.topic, c.schema, c.ct, c.body)
			if !errors.Is(err, c.want) || a != nil {
				t.Fatalf("got %+v, %v; want %v", a, err, c.want)
			}
		})
	}
}

// FuzzParseMessage: no input panics, and every accepted message names a
// positive build id and a path-safe NVR.
func FuzzParseMessage(f *testing.F) {
	f.Add(topicState, koji.SchemaBuildStateChange, mustJSON(f, stateChange(1478312, "chromium", "80.0.3987.132", "1.fc33", 1)))
	f.Add(topicTag, koji.SchemaTag, mustJSON(f, tagBody(7, "hello", "1.0", "1")))
	f.Fuzz(func(t *testing.T, topic, schema string, body []byte) {
		a, err := koji.ParseMessage(koji.MessageFilter{}, topic, schema, "application/json", body)
		if err != nil {
			return
		}
		if a.BuildID <= 0 || strings.ContainsAny(a.NVR, "/\x00 ") || strings.Count(a.NVR, "-") < 2 {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// TestFuzzCorpusPresent keeps the seed corpus in testdata/fuzz honest:
// it exists and holds a valid message and broken ones.
func TestFuzzCorpusPresent(t *testing.T) {
	m, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseMessage", "*"))
	if err != nil || len(m) < 5 {
		t.Fatalf("seed corpus: %v %v", m, err)
	}
	for _, p := range m {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
}
