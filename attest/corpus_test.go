package attest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzParse and FuzzParseRequest")

// writeCorpus writes the valid seeds and a few mutations of each in the Go
// fuzzing corpus file format.
func writeCorpus(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		muts := map[string][]byte{
			"valid":     s,
			"truncated": s[:len(s)/2],
			"dupkey":    bytes.Replace(s, []byte(`{"payloadType"`), []byte(`{"payloadType":"x","payloadType"`), 1),
			"casefold":  bytes.Replace(s, []byte(`"payload"`), []byte(`"Payload"`), 1),
			"trailing":  append(append([]byte{}, s...), '}'),
		}
		for name, m := range muts {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(m)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d-%s", i, name)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// readCorpusFile reads a one-value []byte corpus file.
func readCorpusFile(data []byte) ([]byte, error) {
	lines := bytes.SplitN(data, []byte("\n"), 3)
	if len(lines) < 2 || string(lines[0]) != "go test fuzz v1" {
		return nil, errors.New("not a corpus file")
	}
	v := bytes.TrimSuffix(bytes.TrimPrefix(lines[1], []byte("[]byte(")), []byte(")"))
	s, err := strconv.Unquote(string(v))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}
