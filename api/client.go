package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

// Bounds on what the client reads from a server.
const (
	maxErrorBody = 64 << 10
	maxJSONBody  = 64 << 20 // the jobs list of a busy coordinator
	maxReadBody  = 32 << 20 // a full entry bundle is at most 256 * 64 KiB
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the server's base URL, e.g. "https://log.skyline.example".
	// Required.
	URL string
	// HTTP is the HTTP client. Default: one with a 60s timeout.
	HTTP *http.Client
	// Signer signs requests (lease, lease end, notices with a builder key;
	// admin actions with an admin key). Required for those calls only.
	Signer *attest.Signer
	// Origin is the checkpoint origin (C2SP tlog-checkpoint) of the log the
	// server runs. Signed requests name it as their audience, so that the
	// server of another log that trusts the same key refuses them. Take it
	// from the same trusted configuration as the log's public key, never
	// from the server: a server that chose it could relay the request to
	// another log. Required for signed calls, with Signer.
	Origin string
	// Arches are the architectures Lease asks for. Default: x86_64.
	Arches []string
	// PollInterval is how often Submit polls for a checkpoint when the
	// server answered before one covered the entry. Default 1s.
	PollInterval time.Duration
	// Now is the clock that dates requests. Default time.Now.
	Now func() time.Time
}

// Client talks to `skyline serve`. It implements builder.Coordinator.
type Client struct {
	cfg  ClientConfig
	root string // the server's base URL, the prefix of every request's URL
}

var _ builder.Coordinator = (*Client)(nil)

// NewClient returns a client of the server at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api: server URL %q: want http(s)://host[/path]: %w", cfg.URL, ErrBadParam)
	}
	if cfg.Origin != "" {
		if err := attest.CheckOrigin(cfg.Origin); err != nil {
			return nil, fmt.Errorf("api: client of %s: %w", cfg.URL, err)
		}
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	if len(cfg.Arches) == 0 {
		cfg.Arches = []string{"x86_64"}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, root: u.String()}, nil
}

// do sends a request and returns the body of a 200 answer, or the
// server's error as an *Error.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, limit int64) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.root+path, rd)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		var eb ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Code == "" {
			eb = ErrorBody{Error: strings.TrimSpace(string(b)), Code: ""}
		}
		return nil, fmt.Errorf("api: %s %s: %w", method, path, &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error})
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: read: %w", method, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("api: %s %s: answer over %d bytes: %w", method, path, limit, ErrBodyTooLarge)
	}
	return b, nil
}

// decode decodes a server's JSON answer strictly enough to notice a
// different protocol: unknown fields are refused.
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("api: decode %T: %w", v, err)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	b, err := c.do(ctx, http.MethodGet, path, "", nil, maxJSONBody)
	if err != nil {
		return err
	}
	return decode(b, v)
}

// signedPost signs body as action with the client's key and posts it.
func (c *Client) signedPost(ctx context.Context, path, action string, body, out any) error {
	if c.cfg.Signer == nil {
		return fmt.Errorf("api: %s needs a signing key: %w", action, ErrBadParam)
	}
	if c.cfg.Origin == "" {
		return fmt.Errorf("api: %s needs the log's origin (ClientConfig.Origin), which the request names as its audience: %w", action, ErrBadParam)
	}
	env, err := attest.SignRequest(c.cfg.Signer, c.cfg.Origin, action, body, c.cfg.Now())
	if err != nil {
		return err
	}
	b, err := c.do(ctx, http.MethodPost, path, contentJSON, env, maxJSONBody)
	if err != nil {
		return err
	}
	return decode(b, out)
}

// Checkpoint returns the latest checkpoint note (unverified).
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/checkpoint", "", nil, maxErrorBody)
}

// ReadPath returns the bytes at a C2SP tlog-tiles path ("checkpoint",
// "tile/0/000", "tile/entries/x001/234.p/5"), unverified.
func (c *Client) ReadPath(ctx context.Context, path string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/"+path, "", nil, maxReadBody)
}

// Entry returns the entry at index (unverified).
func (c *Client) Entry(ctx context.Context, index uint64) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/entry/"+strconv.FormatUint(index, 10), "", nil, attest.MaxEntrySize)
}

// Lookup returns the entries the server indexes under nvr.
func (c *Client) Lookup(ctx context.Context, nvr string) (*LookupResponse, error) {
	if err := attest.CheckNVR(nvr); err != nil {
		return nil, fmt.Errorf("api: lookup: %w", err)
	}
	var out LookupResponse
	if err := c.getJSON(ctx, "/lookup/"+url.PathEscape(nvr), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// InclusionProof returns the inclusion proof of index in the tree of size
// (unverified).
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var out InclusionResponse
	if err := c.getJSON(ctx, fmt.Sprintf("/proof/inclusion?index=%d&size=%d", index, size), &out); err != nil {
		return nil, err
	}
	return out.Proof, nil
}

// ConsistencyProof returns the consistency proof between two tree sizes
// (unverified).
func (c *Client) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	var out ConsistencyResponse
	if err := c.getJSON(ctx, fmt.Sprintf("/proof/consistency?from=%d&to=%d", from, to), &out); err != nil {
		return nil, err
	}
	return out.Proof, nil
}

// SubmitOne submits one envelope. With wait, the server waits (bounded) for
// a checkpoint covering it and returns the inclusion proof too.
func (c *Client) SubmitOne(ctx context.Context, envelope []byte, wait bool) (*SubmitResponse, error) {
	path := "/submit"
	if wait {
		path += "?wait=1"
	}
	b, err := c.do(ctx, http.MethodPost, path, contentJSON, envelope, maxJSONBody)
	if err != nil {
		return nil, err
	}
	var out SubmitResponse
	if err := decode(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// prove polls for a checkpoint covering index and returns it with the
// inclusion proof of index against it.
func (c *Client) prove(ctx context.Context, index uint64) ([]byte, [][]byte, error) {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		cp, err := c.Checkpoint(ctx)
		if err != nil && !errors.Is(err, log.ErrNotFound) {
			return nil, nil, err
		}
		if err == nil {
			size, err := CheckpointSize(cp)
			if err != nil {
				return nil, nil, err
			}
			if size > index {
				p, err := c.InclusionProof(ctx, index, size)
				if err != nil {
					return nil, nil, err
				}
				return cp, p, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("api: waiting for a checkpoint covering %d: %w", index, ctx.Err())
		case <-t.C:
		}
	}
}

// permanent reports whether a server error means that sending the same
// bytes again cannot succeed.
func permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests && e.Status != http.StatusRequestTimeout
}

// Submit sends the envelopes of one result set and returns the receipt that
// places each in the log (builder.Coordinator). Envelopes already in the
// log get their existing entries. Errors the same bytes cannot overcome
// wrap builder.ErrRejected.
func (c *Client) Submit(ctx context.Context, envelopes [][]byte) (*builder.Receipt, error) {
	r := &builder.Receipt{Entries: make([]builder.ReceiptEntry, len(envelopes))}
	for i, env := range envelopes {
		res, err := c.SubmitOne(ctx, env, true)
		if err != nil {
			if permanent(err) {
				return nil, fmt.Errorf("api: submit envelope %d: %w: %w", i, builder.ErrRejected, err)
			}
			return nil, fmt.Errorf("api: submit envelope %d: %w", i, err)
		}
		cp, proof := []byte(res.Checkpoint), res.Proof
		if res.Checkpoint == "" {
			if cp, proof, err = c.prove(ctx, res.Index); err != nil {
				return nil, err
			}
		}
		r.Entries[i] = builder.ReceiptEntry{Index: res.Index, Proof: proof, Checkpoint: cp}
	}
	return r, nil
}

// Lease asks for a job for one of ClientConfig.Arches
// (builder.Coordinator); builder.ErrNoWork when none is eligible.
func (c *Client) Lease(ctx context.Context) (*attest.Lease, error) {
	var out LeaseResponse
	if err := c.signedPost(ctx, "/lease", ActionLease, LeaseBody{Arches: c.cfg.Arches}, &out); err != nil {
		if errors.Is(err, coord.ErrNoJob) {
			return nil, fmt.Errorf("%w: %w", builder.ErrNoWork, err)
		}
		return nil, err
	}
	return &out.Lease, nil
}

// EndLease hands a lease back without a result (builder.Coordinator).
func (c *Client) EndLease(ctx context.Context, leaseID, reason, detail string) error {
	var out IndexResponse
	return c.signedPost(ctx, "/lease/"+url.PathEscape(leaseID)+"/end", ActionLeaseEnd, LeaseEndBody{LeaseID: leaseID, Reason: reason, Detail: detail}, &out)
}

// Notices returns the notices about the client key's results
// (builder.Coordinator).
func (c *Client) Notices(ctx context.Context) ([]builder.Notice, error) {
	var out NoticesResponse
	if err := c.signedPost(ctx, "/notices", ActionNotices, EmptyBody{}, &out); err != nil {
		return nil, err
	}
	ns := make([]builder.Notice, len(out.Notices))
	for i, n := range out.Notices {
		ns[i] = builder.Notice{Index: n.Index, Kind: n.Kind, Build: n.Build, Verdict: n.Verdict, ResultSet: n.ResultSet, Expected: n.Expected, At: n.At}
	}
	return ns, nil
}

// Enqueue asks for a job (admin).
func (c *Client) Enqueue(ctx context.Context, b EnqueueBody) (*EnqueueResponse, error) {
	var out EnqueueResponse
	if err := c.signedPost(ctx, "/admin/enqueue", ActionEnqueue, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Enrol enrols a key (admin).
func (c *Client) Enrol(ctx context.Context, b EnrolBody) (*IndexResponse, error) {
	var out IndexResponse
	if err := c.signedPost(ctx, "/admin/enrol", ActionEnrol, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Revoke revokes a key (admin).
func (c *Client) Revoke(ctx context.Context, keyID, reason string) (*IndexResponse, error) {
	var out IndexResponse
	if err := c.signedPost(ctx, "/admin/revoke", ActionRevoke, RevokeBody{KeyID: keyID, Reason: reason}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Jobs lists every job (admin).
func (c *Client) Jobs(ctx context.Context) ([]coord.JobStatus, error) {
	var out JobsResponse
	if err := c.signedPost(ctx, "/admin/jobs", ActionJobs, EmptyBody{}, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}
