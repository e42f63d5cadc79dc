package koji_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
)

func newPublisher(t *testing.T, rdb *kojitest.FakeResultsDB, state string, mod func(*koji.PublisherConfig)) *koji.Publisher {
	t.Helper()
	cfg := koji.PublisherConfig{URL: rdb.URL(), StatePath: state, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	p, err := koji.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func verdict(v string, index uint64) koji.Verdict {
	return koji.Verdict{NVR: "hello-2.12.1-7.fc41", Arch: "x86_64", Verdict: v, LogIndex: index, TreeSize: index + 10,
		URL: "https://skyline.example.org/verdicts/" + strconv.FormatUint(index, 10)}
}

func TestOutcomeMapping(t *testing.T) {
	for _, tt := range []struct {
		verdict, outcome string
		publish          bool
	}{
		{koji.VerdictReproduced, "PASSED", true},
		{koji.VerdictDisputed, "FAILED", true},
		{koji.VerdictOfficialMismatch, "FAILED", true},
		{koji.VerdictUnreproducible, "NEEDS_INSPECTION", true},
		{koji.VerdictInsufficient, "", false},
	} {
		o, pub, err := koji.Outcome(tt.verdict)
		if err != nil || o != tt.outcome || pub != tt.publish {
			t.Errorf("Outcome(%s) = %q, %v, %v; want %q, %v", tt.verdict, o, pub, err, tt.outcome, tt.publish)
		}
		if o == koji.OutcomeInfo {
			t.Errorf("Outcome(%s) is INFO, which Greenwave counts as passing", tt.verdict)
		}
	}
	if _, _, err := koji.Outcome("maybe"); !errors.Is(err, koji.ErrBadVerdict) {
		t.Errorf("unknown verdict: err = %v, want ErrBadVerdict", err)
	}
}

func TestPublishEachFinalVerdict(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	p := newPublisher(t, rdb, filepath.Join(t.TempDir(), "state.json"), nil)
	ctx := context.Background()
	want := map[string]string{
		koji.VerdictReproduced: "PASSED", koji.VerdictDisputed: "FAILED",
		koji.VerdictOfficialMismatch: "FAILED", koji.VerdictUnreproducible: "NEEDS_INSPECTION",
	}
	idx := uint64(100)
	for v, outcome := range want {
		idx++
		vd := verdict(v, idx)
		st, err := p.Publish(ctx, vd)
		if err != nil || st != koji.Published {
			t.Fatalf("Publish(%s) = %v, %v", v, st, err)
		}
		res := rdb.Results()
		got := res[len(res)-1]
		if got.Testcase != koji.Testcase || got.Outcome != outcome || got.RefURL != vd.URL {
			t.Errorf("%s stored as %+v, want outcome %s, ref_url %s", v, got, outcome, vd.URL)
		}
		wantData := map[string][]string{
			"type": {"koji_build"}, "item": {vd.NVR}, "arch": {"x86_64"}, "system_architecture": {"x86_64"},
			"verdict": {v}, "log_index": {itoa(idx)}, "tree_size": {itoa(idx + 10)},
		}
		if !reflect.DeepEqual(got.Data, wantData) {
			t.Errorf("%s data = %v, want %v", v, got.Data, wantData)
		}
	}
	posts := rdb.Posts()
	st, err := p.Publish(ctx, verdict(koji.VerdictInsufficient, 999))
	if err != nil || st != koji.NotFinal {
		t.Errorf("insufficient: %v, %v; want NotFinal", st, err)
	}
	if rdb.Posts() != posts || rdb.Count() != len(want) {
		t.Errorf("insufficient verdict was sent to ResultsDB")
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestPublishOnceAcrossRestarts(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	state := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()
	v := verdict(koji.VerdictReproduced, 7)
	if st, err := newPublisher(t, rdb, state, nil).Publish(ctx, v); err != nil || st != koji.Published {
		t.Fatalf("first publish: %v, %v", st, err)
	}
	// A restarted publisher reads its state file and sends nothing.
	requests := rdb.Requests()
	st, err := newPublisher(t, rdb, state, nil).Publish(ctx, v)
	if err != nil || st != koji.AlreadyPublished {
		t.Errorf("after restart: %v, %v; want AlreadyPublished", st, err)
	}
	if rdb.Requests() != requests || rdb.Count() != 1 {
		t.Errorf("restart sent %d requests, %d results stored; want 0 and 1", rdb.Requests()-requests, rdb.Count())
	}
	// A new verdict for the same build (a later log index) is published.
	later := verdict(koji.VerdictDisputed, 8)
	if st, err := newPublisher(t, rdb, state, nil).Publish(ctx, later); err != nil || st != koji.Published {
		t.Errorf("later verdict: %v, %v; want Published", st, err)
	}
	if rdb.Count() != 2 {
		t.Errorf("%d results, want 2", rdb.Count())
	}
}

func TestPublishLostStateFindsExistingResult(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	ctx := context.Background()
	v := verdict(koji.VerdictReproduced, 7)
	if _, err := newPublisher(t, rdb, filepath.Join(t.TempDir(), "a.json"), nil).Publish(ctx, v); err != nil {
		t.Fatal(err)
	}
	// The crash window: POST succeeded, state write lost. A fresh state file
	// must not lead to a second result.
	fresh := filepath.Join(t.TempDir(), "b.json")
	st, err := newPublisher(t, rdb, fresh, nil).Publish(ctx, v)
	if err != nil || st != koji.AlreadyPublished {
		t.Errorf("with lost state: %v, %v; want AlreadyPublished", st, err)
	}
	if rdb.Posts() != 1 || rdb.Count() != 1 {
		t.Errorf("%d posts, %d results; want 1 and 1", rdb.Posts(), rdb.Count())
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the found result was not recorded in the new state file: %v", err)
	}
}

func TestPublishRetriesServerErrors(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	state := filepath.Join(t.TempDir(), "state.json")
	p := newPublisher(t, rdb, state, func(c *koji.PublisherConfig) { c.MaxAttempts = 3 })
	ctx := context.Background()
	rdb.FailNext(2) // the lookup fails twice, then the lookup and the POST succeed
	if st, err := p.Publish(ctx, verdict(koji.VerdictReproduced, 1)); err != nil || st != koji.Published {
		t.Fatalf("Publish = %v, %v", st, err)
	}
	if n := rdb.Requests(); n != 4 {
		t.Errorf("%d requests, want 4 (2 failed lookups, lookup, POST)", n)
	}

	rdb.FailNext(100)
	before := rdb.Requests()
	_, err := p.Publish(ctx, verdict(koji.VerdictDisputed, 2))
	if !errors.Is(err, koji.ErrResultsDBUnavailable) {
		t.Errorf("err = %v, want ErrResultsDBUnavailable", err)
	}
	if n := rdb.Requests() - before; n != 3 {
		t.Errorf("%d attempts, want MaxAttempts = 3", n)
	}
	// Nothing was recorded for the failed verdict: a retry later publishes it.
	rdb.FailNext(0)
	if st, err := p.Publish(ctx, verdict(koji.VerdictDisputed, 2)); err != nil || st != koji.Published {
		t.Errorf("after recovery: %v, %v; want Published", st, err)
	}
}

func TestPublishCredentials(t *testing.T) {
	ctx := context.Background()
	basic := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{Username: "skyline", Password: "s3cret"})
	good := newPublisher(t, basic, filepath.Join(t.TempDir(), "s.json"), func(c *koji.PublisherConfig) {
		c.Username, c.Password = "skyline", "s3cret"
	})
	if st, err := good.Publish(ctx, verdict(koji.VerdictReproduced, 1)); err != nil || st != koji.Published {
		t.Errorf("basic auth: %v, %v", st, err)
	}
	badState := filepath.Join(t.TempDir(), "s.json")
	bad := newPublisher(t, basic, badState, func(c *koji.PublisherConfig) { c.Username, c.Password = "skyline", "wrong" })
	_, err := bad.Publish(ctx, verdict(koji.VerdictReproduced, 2))
	if !errors.Is(err, koji.ErrRejected) {
		t.Errorf("wrong password: err = %v, want ErrRejected", err)
	}
	if _, err := os.Stat(badState); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected publish wrote state: %v", err)
	}

	bearer := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{Token: "tok-123"})
	p := newPublisher(t, bearer, filepath.Join(t.TempDir(), "s.json"), func(c *koji.PublisherConfig) { c.Token = "tok-123" })
	if st, err := p.Publish(ctx, verdict(koji.VerdictReproduced, 1)); err != nil || st != koji.Published {
		t.Errorf("bearer token: %v, %v", st, err)
	}
	noTok := newPublisher(t, bearer, filepath.Join(t.TempDir(), "s.json"), nil)
	if _, err := noTok.Publish(ctx, verdict(koji.VerdictReproduced, 2)); !errors.Is(err, koji.ErrRejected) {
		t.Errorf("no token: err = %v, want ErrRejected", err)
	}
	if _, err := koji.NewPublisher(koji.PublisherConfig{URL: bearer.URL(), StatePath: "x", Token: "t", Username: "u"}); err == nil {
		t.Error("token and basic auth together were accepted")
	}
}

func TestPublishRejectsBadVerdicts(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	state := filepath.Join(t.TempDir(), "state.json")
	p := newPublisher(t, rdb, state, nil)
	good := verdict(koji.VerdictReproduced, 5)
	for _, tt := range []struct {
		name string
		mod  func(*koji.Verdict)
	}{
		{"empty NVR", func(v *koji.Verdict) { v.NVR = "" }},
		{"NVR without release", func(v *koji.Verdict) { v.NVR = "hello" }},
		{"NVR with slash", func(v *koji.Verdict) { v.NVR = "hello-1-1/../x" }},
		{"empty arch", func(v *koji.Verdict) { v.Arch = "" }},
		{"unknown verdict", func(v *koji.Verdict) { v.Verdict = "probably" }},
		{"tree does not contain index", func(v *koji.Verdict) { v.TreeSize = v.LogIndex }},
		{"relative URL", func(v *koji.Verdict) { v.URL = "/verdict/5" }},
		{"javascript URL", func(v *koji.Verdict) { v.URL = "javascript:alert(1)" }},
	} {
		v := good
		tt.mod(&v)
		if _, err := p.Publish(context.Background(), v); !errors.Is(err, koji.ErrBadVerdict) {
			t.Errorf("%s: err = %v, want ErrBadVerdict", tt.name, err)
		}
	}
	if rdb.Requests() != 0 {
		t.Errorf("bad verdicts caused %d requests", rdb.Requests())
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad verdicts wrote state: %v", err)
	}
}

func TestNewPublisherRejectsBadState(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":       "not json",
		"unknown field": `{"version":1,"published":{},"extra":1}`,
		"wrong version": `{"version":2,"published":{}}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := koji.NewPublisher(koji.PublisherConfig{URL: "https://resultsdb.example.org/api/v2.0", StatePath: p}); !errors.Is(err, koji.ErrState) {
			t.Errorf("%s: err = %v, want ErrState", name, err)
		}
	}
	if _, err := koji.NewPublisher(koji.PublisherConfig{URL: "https://resultsdb.example.org/api/v2.0"}); !errors.Is(err, koji.ErrState) {
		t.Errorf("no state path: err = %v, want ErrState", err)
	}
}

func TestPublishConcurrentSameVerdict(t *testing.T) {
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	p := newPublisher(t, rdb, filepath.Join(t.TempDir(), "state.json"), nil)
	v := verdict(koji.VerdictReproduced, 3)
	var wg sync.WaitGroup
	statuses := make([]koji.PublishStatus, 8)
	errs := make([]error, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], errs[i] = p.Publish(context.Background(), v)
		}()
	}
	wg.Wait()
	published := 0
	for i, st := range statuses {
		if errs[i] != nil {
			t.Errorf("publish %d: %v", i, errs[i])
		}
		if st == koji.Published {
			published++
		}
	}
	if published != 1 || rdb.Count() != 1 {
		t.Errorf("%d Published answers, %d stored results; want exactly 1 each", published, rdb.Count())
	}
}
