// Package koji is skyline's side of Fedora's build system: a client of the
// Koji hub's XML-RPC API (XML-RPC spec, http://xmlrpc.com/spec.md, with
// the Python extensions Koji uses: <nil/>, <i8>, keyword arguments and
// system.multicall), download URLs laid out as koji.PathInfo lays them
// out, and a publisher of skyline verdicts to ResultsDB (API v2.0) that
// Greenwave's PassingTestCaseRule gates Bodhi updates on.
//
// Everything the hub sends is untrusted: responses are size- and
// depth-limited and parsed strictly, and file names taken from the hub are
// checked before they become URL paths. docs/fedora.md describes running
// it against Fedora's Koji, kojipkgs and ResultsDB.
package koji

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// ErrUnavailable: the hub could not be reached, or answered with a server
// error, on every attempt.
var ErrUnavailable = errors.New("koji: hub unavailable")

// ErrHTTPStatus: the hub answered with a non-200, non-5xx status (not retried).
var ErrHTTPStatus = errors.New("koji: unexpected HTTP status")

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// HubURL is the XML-RPC endpoint, e.g. https://koji.fedoraproject.org/kojihub.
	HubURL string
	// HTTPClient makes the requests; default a client with no overall
	// timeout (each attempt has Timeout).
	HTTPClient *http.Client
	// Timeout bounds one attempt (connect, send, read). Default 60s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call on transport errors and
	// HTTP 5xx. Faults are never retried. Default 4.
	MaxAttempts int
	// Backoff is the wait before the second attempt; it doubles per attempt
	// up to MaxBackoff. Default 1s, MaxBackoff default 30s.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Limits bounds responses. Defaults: DefaultMaxResponseSize, DefaultMaxDepth.
	Limits Limits
	// Logger receives one line per retried attempt. Default slog.Default().
	Logger *slog.Logger
}

// Client calls one Koji hub. It is safe for concurrent use.
type Client struct {
	cfg Config
}

// NewClient checks cfg and fills its defaults.
func NewClient(cfg Config) (*Client, error) {
	if cfg.HubURL == "" || !(strings.HasPrefix(cfg.HubURL, "http://") || strings.HasPrefix(cfg.HubURL, "https://")) {
		return nil, fmt.Errorf("koji: hub URL %q is not an http(s) URL", cfg.HubURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg}, nil
}

// Call invokes method with args (see EncodeCall for the Go types allowed;
// Kwargs last for keyword arguments) and returns the decoded result. A
// fault is returned as a *Fault error.
func (c *Client) Call(ctx context.Context, method string, args ...any) (any, error) {
	body, err := EncodeCall(method, args...)
	if err != nil {
		return nil, err
	}
	v, err := c.post(ctx, method, body)
	if err != nil {
		return nil, fmt.Errorf("koji: %s: %w", method, err)
	}
	return v, nil
}

// CallResult is one answer of a multicall: a value or a *Fault.
type CallResult struct {
	Value any
	Err   error
}

// Multicall runs calls in one system.multicall request. The hub answers
// each call with a one-element array (its result) or a fault struct; the
// whole request fails only when the request itself fails.
func (c *Client) Multicall(ctx context.Context, calls []Call) ([]CallResult, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	v, err := c.Call(ctx, "system.multicall", calls)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("koji: system.multicall: %w: result is %T, want array", ErrBadResult, v)
	}
	if len(arr) != len(calls) {
		return nil, fmt.Errorf("koji: system.multicall: %w: %d results for %d calls", ErrBadResult, len(arr), len(calls))
	}
	out := make([]CallResult, len(arr))
	for i, e := range arr {
		switch x := e.(type) {
		case []any:
			if len(x) != 1 {
				return nil, fmt.Errorf("koji: system.multicall: %w: result %d has %d elements, want 1", ErrBadResult, i, len(x))
			}
			out[i].Value = x[0]
		case map[string]any:
			f, err := faultFromValue(x)
			if err != nil {
				return nil, fmt.Errorf("koji: system.multicall: %w: result %d: %v", ErrBadResult, i, err)
			}
			out[i].Err = fmt.Errorf("koji: %s: %w", calls[i].Method, f)
		default:
			return nil, fmt.Errorf("koji: system.multicall: %w: result %d is %T", ErrBadResult, i, e)
		}
	}
	return out, nil
}

// post sends one XML-RPC body with bounded retries on transport errors
// and 5xx answers.
func (c *Client) post(ctx context.Context, method string, body []byte) (any, error) {
	var last error
	wait := c.cfg.Backoff
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			c.cfg.Logger.Warn("koji: retrying hub call", "method", method, "attempt", attempt, "after", wait, "err", last)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-t.C:
			}
			wait = min(2*wait, c.cfg.MaxBackoff)
		}
		v, retry, err := c.attempt(ctx, body)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		if !retry {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w after %d attempts: %v", ErrUnavailable, c.cfg.MaxAttempts, last)
}

func (c *Client) attempt(ctx context.Context, body []byte) (v any, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.HubURL, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, true, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("%w: %s", ErrHTTPStatus, resp.Status)
	}
	v, err = DecodeResponse(resp.Body, c.cfg.Limits)
	return v, false, err
}

// GetBuild returns the build with the given NVR, calling
// getBuild(nvr, strict=True). An unknown NVR is ErrNoSuchBuild.
func (c *Client) GetBuild(ctx context.Context, nvr string) (*Build, error) {
	return c.getBuild(ctx, nvr)
}

// GetBuildByID is GetBuild by Koji build id.
func (c *Client) GetBuildByID(ctx context.Context, id int64) (*Build, error) {
	return c.getBuild(ctx, id)
}

func (c *Client) getBuild(ctx context.Context, ref any) (*Build, error) {
	v, err := c.Call(ctx, "getBuild", ref, Kwargs{"strict": true})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("koji: getBuild %v: %w", ref, ErrNoSuchBuild)
	}
	b, err := BuildFromValue(v)
	if err != nil {
		return nil, fmt.Errorf("koji: getBuild %v: %w", ref, err)
	}
	return b, nil
}

// ListBuildRPMs returns the RPMs (binary and source) of a build.
func (c *Client) ListBuildRPMs(ctx context.Context, buildID int64) ([]RPM, error) {
	v, err := c.Call(ctx, "listBuildRPMs", buildID)
	if err != nil {
		return nil, err
	}
	rpms, err := listOf("listBuildRPMs", v, RPMFromValue)
	if err != nil {
		return nil, fmt.Errorf("koji: listBuildRPMs %d: %w", buildID, err)
	}
	return rpms, nil
}

// BuildQuery selects builds for ListBuilds; zero fields do not filter.
type BuildQuery struct {
	// State, when set, keeps builds in that state (BuildComplete for a poller).
	State *BuildState
	// CompleteAfter keeps builds completed after this time; it is sent
	// as seconds since the epoch (a double), which kojihub accepts.
	CompleteAfter time.Time
	// CompleteAfterISO is the same bound as Koji's ISO text
	// ("YYYY-MM-DD HH24:MI:SS"); it wins over CompleteAfter when set.
	CompleteAfterISO string
}

// ListBuilds calls listBuilds with q as keyword arguments.
func (c *Client) ListBuilds(ctx context.Context, q BuildQuery) ([]Build, error) {
	kw := Kwargs{}
	if q.State != nil {
		kw["state"] = int64(*q.State)
	}
	switch {
	case q.CompleteAfterISO != "":
		kw["completeAfter"] = q.CompleteAfterISO
	case !q.CompleteAfter.IsZero():
		kw["completeAfter"] = float64(q.CompleteAfter.UnixMicro()) / 1e6
	}
	var args []any
	if len(kw) > 0 {
		args = append(args, kw)
	}
	v, err := c.Call(ctx, "listBuilds", args...)
	if err != nil {
		return nil, err
	}
	builds, err := listOf("listBuilds", v, BuildFromValue)
	if err != nil {
		return nil, fmt.Errorf("koji: listBuilds: %w", err)
	}
	return builds, nil
}

// GetLastEvent returns the hub's latest event: a poller's cursor.
func (c *Client) GetLastEvent(ctx context.Context) (*Event, error) {
	v, err := c.Call(ctx, "getLastEvent")
	if err != nil {
		return nil, err
	}
	e, err := EventFromValue(v)
	if err != nil {
		return nil, fmt.Errorf("koji: getLastEvent: %w", err)
	}
	return e, nil
}

// QueryRPMSigs returns the signatures Koji holds for one RPM.
func (c *Client) QueryRPMSigs(ctx context.Context, rpmID int64) ([]RPMSig, error) {
	v, err := c.Call(ctx, "queryRPMSigs", Kwargs{"rpm_id": rpmID})
	if err != nil {
		return nil, err
	}
	sigs, err := listOf("queryRPMSigs", v, RPMSigFromValue)
	if err != nil {
		return nil, fmt.Errorf("koji: queryRPMSigs %d: %w", rpmID, err)
	}
	return sigs, nil
}

// GetBuilds fetches several builds by NVR in one multicall. The result i
// is builds[i] or errs[i] (ErrNoSuchBuild for an unknown NVR); err is set
// only when the request itself failed.
func (c *Client) GetBuilds(ctx context.Context, nvrs []string) (builds []*Build, errs []error, err error) {
	calls := make([]Call, len(nvrs))
	for i, nvr := range nvrs {
		calls[i] = Call{Method: "getBuild", Args: []any{nvr, Kwargs{"strict": true}}}
	}
	res, err := c.Multicall(ctx, calls)
	if err != nil {
		return nil, nil, err
	}
	builds = make([]*Build, len(nvrs))
	errs = make([]error, len(nvrs))
	for i, r := range res {
		switch {
		case r.Err != nil:
			errs[i] = r.Err
		case r.Value == nil:
			errs[i] = fmt.Errorf("koji: getBuild %s: %w", nvrs[i], ErrNoSuchBuild)
		default:
			builds[i], errs[i] = BuildFromValue(r.Value)
		}
	}
	return builds, errs, nil
}
