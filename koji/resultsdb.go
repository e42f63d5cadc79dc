package koji

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Testcase is the ResultsDB testcase skyline publishes and Greenwave gates on.
const Testcase = "skyline.reproducible"

// Verdict names, as the witness's agreement engine produces them.
const (
	VerdictReproduced       = "reproduced"
	VerdictDisputed         = "disputed"
	VerdictOfficialMismatch = "official-mismatch"
	VerdictUnreproducible   = "unreproducible"
	VerdictInsufficient     = "insufficient"
)

// ResultsDB outcomes (resultsdb/models/results.py PRESET_OUTCOMES).
const (
	OutcomePassed          = "PASSED"
	OutcomeFailed          = "FAILED"
	OutcomeNeedsInspection = "NEEDS_INSPECTION"
	OutcomeInfo            = "INFO"
)

// Errors of the publisher, checked with errors.Is.
var (
	// ErrBadVerdict: the verdict is incomplete or malformed; nothing is sent.
	ErrBadVerdict = errors.New("koji: bad verdict")
	// ErrRejected: ResultsDB answered 4xx; retrying would not help.
	ErrRejected = errors.New("koji: ResultsDB rejected the result")
	// ErrResultsDBUnavailable: every attempt failed on transport or 5xx.
	ErrResultsDBUnavailable = errors.New("koji: ResultsDB unavailable")
	// ErrState: the publisher's state file is unreadable or unwritable.
	ErrState = errors.New("koji: publisher state")
)

// Verdict is one final skyline verdict for a Koji build on one arch, as a
// witness signed and logged it.
type Verdict struct {
	NVR      string // Koji build NVR, the ResultsDB item
	Arch     string // the arch the verdict covers
	Verdict  string // one of the Verdict* names
	LogIndex uint64 // index of the verdict entry in the skyline log
	TreeSize uint64 // tree size the verdict was computed at
	URL      string // where a human reads the verdict (names LogIndex)
}

// Outcome maps a verdict to the ResultsDB outcome: PASSED for reproduced,
// FAILED for disputed and official-mismatch, NEEDS_INSPECTION for
// unreproducible. publish is false for insufficient: nothing is published
// until a verdict is final, and never INFO, which Greenwave counts as passing.
func Outcome(verdict string) (outcome string, publish bool, err error) {
	switch verdict {
	case VerdictReproduced:
		return OutcomePassed, true, nil
	case VerdictDisputed, VerdictOfficialMismatch:
		return OutcomeFailed, true, nil
	case VerdictUnreproducible:
		return OutcomeNeedsInspection, true, nil
	case VerdictInsufficient:
		return "", false, nil
	}
	return "", false, fmt.Errorf("%w: unknown verdict %q", ErrBadVerdict, verdict)
}

// PublisherConfig configures a Publisher. Zero fields take the defaults.
type PublisherConfig struct {
	// URL is ResultsDB's API root, e.g.
	// https://resultsdb.fedoraproject.org/api/v2.0 (no trailing slash needed).
	URL string
	// Username and Password, when set, are sent as HTTP basic auth (for
	// deployments protecting POST at the web server). Token, when set, is sent as
	// "Authorization: Bearer" (OIDC deployments). At most one of the two.
	Username string
	Password string
	Token    string
	// StatePath is the JSON file remembering what was published, so a
	// restarted publisher does not publish twice. Required.
	StatePath string
	// HTTPClient sends requests; default a client with a 60s timeout.
	HTTPClient *http.Client
	// MaxAttempts bounds attempts per request on transport errors and 5xx. Default 5.
	MaxAttempts int
	// Backoff is the first wait between attempts, doubling up to MaxBackoff.
	// Defaults 1s and 60s.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Logger receives one line per published result and per retry.
	Logger *slog.Logger
}

// Publisher posts final verdicts to ResultsDB, once each.
type Publisher struct {
	cfg  PublisherConfig
	mu   sync.Mutex
	done map[string]publishedEntry
}

type publishedEntry struct {
	ResultID int64  `json:"result_id"`
	Outcome  string `json:"outcome"`
	Verdict  string `json:"verdict"`
}

type stateFile struct {
	Version   int                       `json:"version"`
	Published map[string]publishedEntry `json:"published"`
}

// NewPublisher loads (or starts) the state file.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("koji: ResultsDB URL %q is not an http(s) URL", cfg.URL)
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	if cfg.Token != "" && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("koji: ResultsDB credentials: set a token or a username/password, not both")
	}
	if cfg.StatePath == "" {
		return nil, fmt.Errorf("%w: no state path configured", ErrState)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{cfg: cfg, done: map[string]publishedEntry{}}
	data, err := os.ReadFile(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	default:
		var st stateFile
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		if err := d.Decode(&st); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrState, cfg.StatePath, err)
		}
		if st.Version != 1 {
			return nil, fmt.Errorf("%w: %s: version %d, want 1", ErrState, cfg.StatePath, st.Version)
		}
		if st.Published != nil {
			p.done = st.Published
		}
	}
	return p, nil
}

// PublishStatus says what Publish did.
type PublishStatus int

const (
	// Published: a new result was created in ResultsDB.
	Published PublishStatus = iota
	// AlreadyPublished: this verdict was published before (by this state
	// file, or found in ResultsDB); nothing was sent.
	AlreadyPublished
	// NotFinal: the verdict is "insufficient"; nothing was sent.
	NotFinal
)

func (s PublishStatus) String() string {
	switch s {
	case Published:
		return "published"
	case AlreadyPublished:
		return "already-published"
	case NotFinal:
		return "not-final"
	}
	return "PublishStatus(" + strconv.Itoa(int(s)) + ")"
}

func verdictKey(v Verdict) string {
	return v.NVR + " " + v.Arch + " " + strconv.FormatUint(v.LogIndex, 10)
}

func checkVerdict(v Verdict) error {
	if err := checkComponent("nvr", v.NVR); err != nil || strings.Count(v.NVR, "-") < 2 {
		return fmt.Errorf("%w: NVR %q", ErrBadVerdict, v.NVR)
	}
	if err := checkComponent("arch", v.Arch); err != nil {
		return fmt.Errorf("%w: arch %q", ErrBadVerdict, v.Arch)
	}
	if v.TreeSize <= v.LogIndex {
		return fmt.Errorf("%w: tree size %d does not contain log index %d", ErrBadVerdict, v.TreeSize, v.LogIndex)
	}
	u, err := url.Parse(v.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: verdict URL %q is not an http(s) URL", ErrBadVerdict, v.URL)
	}
	return nil
}

// resultData is the result's data: the subject (type and item, as
// Greenwave's koji_build subject queries them), the arch twice ("arch",
// and "system_architecture", one of Greenwave's DISTINCT_LATEST_RESULTS_ON
// keys, so a later result on one arch cannot hide a failure on another),
// and where the verdict sits in the log.
func resultData(v Verdict) map[string]string {
	return map[string]string{
		"type":                "koji_build",
		"item":                v.NVR,
		"arch":                v.Arch,
		"system_architecture": v.Arch,
		"verdict":             v.Verdict,
		"log_index":           strconv.FormatUint(v.LogIndex, 10),
		"tree_size":           strconv.FormatUint(v.TreeSize, 10),
	}
}

// Publish posts v to ResultsDB unless it is not final or was published
// before. It checks ResultsDB for the same result first, so a crash
// between the POST and the state write does not publish twice either.
func (p *Publisher) Publish(ctx context.Context, v Verdict) (PublishStatus, error) {
	outcome, publish, err := Outcome(v.Verdict)
	if err != nil {
		return 0, err
	}
	if !publish {
		return NotFinal, nil
	}
	if err := checkVerdict(v); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := verdictKey(v)
	if _, ok := p.done[key]; ok {
		return AlreadyPublished, nil
	}
	existing, err := p.find(ctx, v)
	if err != nil {
		return 0, err
	}
	if existing != nil {
		if err := p.remember(key, publishedEntry{ResultID: existing.ID, Outcome: existing.Outcome, Verdict: v.Verdict}); err != nil {
			return 0, err
		}
		return AlreadyPublished, nil
	}
	body, err := json.Marshal(map[string]any{
		"testcase": map[string]string{"name": Testcase},
		"outcome":  outcome,
		"ref_url":  v.URL,
		"note":     fmt.Sprintf("skyline verdict %s for %s on %s (log index %d, tree size %d)", v.Verdict, v.NVR, v.Arch, v.LogIndex, v.TreeSize),
		"data":     resultData(v),
	})
	if err != nil {
		return 0, fmt.Errorf("koji: encode result: %w", err)
	}
	resp, err := p.do(ctx, http.MethodPost, p.cfg.URL+"/results", body, http.StatusCreated)
	if err != nil {
		return 0, fmt.Errorf("koji: publish %s: %w", key, err)
	}
	res, err := ResultFromJSON(resp)
	if err != nil {
		return 0, fmt.Errorf("koji: publish %s: response: %w", key, err)
	}
	if err := p.remember(key, publishedEntry{ResultID: res.ID, Outcome: outcome, Verdict: v.Verdict}); err != nil {
		return 0, err
	}
	p.cfg.Logger.Info("koji: published verdict to ResultsDB", "nvr", v.NVR, "arch", v.Arch, "verdict", v.Verdict, "outcome", outcome, "log_index", v.LogIndex, "result_id", res.ID)
	return Published, nil
}

// find looks for a result of this verdict already in ResultsDB.
func (p *Publisher) find(ctx context.Context, v Verdict) (*Result, error) {
	q := url.Values{}
	q.Set("testcases", Testcase)
	for k, val := range resultData(v) {
		if k == "verdict" {
			continue
		}
		q.Set(k, val)
	}
	resp, err := p.do(ctx, http.MethodGet, p.cfg.URL+"/results?"+q.Encode(), nil, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("koji: look up %s: %w", verdictKey(v), err)
	}
	list, err := ResultListFromJSON(resp, "prev", "next")
	if err != nil {
		return nil, fmt.Errorf("koji: look up %s: %w", verdictKey(v), err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	return &list[0], nil
}

// do sends one request with bounded retries and returns the decoded JSON.
func (p *Publisher) do(ctx context.Context, method, u string, body []byte, want int) (any, error) {
	var last error
	wait := p.cfg.Backoff
	for attempt := 1; attempt <= p.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			p.cfg.Logger.Warn("koji: retrying ResultsDB request", "method", method, "url", u, "attempt", attempt, "err", last)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-t.C:
			}
			wait = min(2*wait, p.cfg.MaxBackoff)
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		switch {
		case p.cfg.Token != "":
			req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
		case p.cfg.Username != "" || p.cfg.Password != "":
			req.SetBasicAuth(p.cfg.Username, p.cfg.Password)
		}
		resp, err := p.cfg.HTTPClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			last = err
			continue
		}
		v, err := decodeJSON(resp.Body, 8<<20)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			last = fmt.Errorf("HTTP %s", resp.Status)
			continue
		case resp.StatusCode != want:
			msg := ""
			if m, ok := v.(map[string]any); ok {
				b, _ := json.Marshal(m)
				msg = ": " + truncate(string(b))
			}
			return nil, fmt.Errorf("%w: HTTP %s%s", ErrRejected, resp.Status, msg)
		case err != nil:
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w after %d attempts: %v", ErrResultsDBUnavailable, p.cfg.MaxAttempts, last)
}

// remember records key durably: write a temporary file, sync, rename over
// the state file, sync the directory.
func (p *Publisher) remember(key string, e publishedEntry) error {
	next := make(map[string]publishedEntry, len(p.done)+1)
	for k, v := range p.done {
		next[k] = v
	}
	next[key] = e
	data, err := json.MarshalIndent(stateFile{Version: 1, Published: next}, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrState, err)
	}
	dir := filepath.Dir(p.cfg.StatePath)
	f, err := os.CreateTemp(dir, ".resultsdb-state-*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	tmp := f.Name()
	_, werr := f.Write(append(data, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p.cfg.StatePath)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %v", ErrState, p.cfg.StatePath, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	p.done = next
	return nil
}

// Result is one ResultsDB result (resultsdb/serializers/api_v2.py).
type Result struct {
	ID         int64
	Testcase   string
	Outcome    string
	SubmitTime string
	Note       string
	RefURL     string
	Groups     []string
	Data       map[string][]string
}

// ResultFromJSON reads one serialized result, strictly.
func ResultFromJSON(v any) (*Result, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: result is not an object", ErrBadJSON)
	}
	if err := onlyKeys("result", m, "id", "groups", "testcase", "submit_time", "outcome", "note", "ref_url", "data", "href"); err != nil {
		return nil, err
	}
	r := &Result{Data: map[string][]string{}}
	id, ok := m["id"].(json.Number)
	if !ok {
		return nil, fmt.Errorf("%w: result id missing or not a number", ErrBadJSON)
	}
	n, err := id.Int64()
	if err != nil {
		return nil, fmt.Errorf("%w: result id %q", ErrBadJSON, id)
	}
	r.ID = n
	tc, ok := m["testcase"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: result testcase missing", ErrBadJSON)
	}
	if err := onlyKeys("testcase", tc, "name", "ref_url", "href"); err != nil {
		return nil, err
	}
	if r.Testcase, ok = tc["name"].(string); !ok {
		return nil, fmt.Errorf("%w: testcase name missing", ErrBadJSON)
	}
	if r.Outcome, ok = m["outcome"].(string); !ok {
		return nil, fmt.Errorf("%w: result outcome missing", ErrBadJSON)
	}
	r.SubmitTime, _ = m["submit_time"].(string)
	r.Note, _ = m["note"].(string)
	r.RefURL, _ = m["ref_url"].(string)
	if gs, ok := m["groups"].([]any); ok {
		for _, g := range gs {
			s, ok := g.(string)
			if !ok {
				return nil, fmt.Errorf("%w: group is not a string", ErrBadJSON)
			}
			r.Groups = append(r.Groups, s)
		}
	}
	if d, ok := m["data"].(map[string]any); ok {
		for k, vals := range d {
			arr, ok := vals.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: data %q is not a list", ErrBadJSON, k)
			}
			for _, x := range arr {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%w: data %q holds a non-string", ErrBadJSON, k)
				}
				r.Data[k] = append(r.Data[k], s)
			}
		}
	} else if m["data"] != nil {
		return nil, fmt.Errorf("%w: result data is not an object", ErrBadJSON)
	}
	return r, nil
}

// ResultListFromJSON reads {"data": [result...]} with the other members
// allowed for the endpoint ("prev" and "next" for /results).
func ResultListFromJSON(v any, extra ...string) ([]Result, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: result list is not an object", ErrBadJSON)
	}
	if err := onlyKeys("result list", m, append([]string{"data"}, extra...)...); err != nil {
		return nil, err
	}
	arr, ok := m["data"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: result list has no data array", ErrBadJSON)
	}
	out := make([]Result, 0, len(arr))
	for _, e := range arr {
		r, err := ResultFromJSON(e)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}
