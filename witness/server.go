package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
)

// maxAddCheckpointBody bounds an add-checkpoint request: 63 proof lines,
// a checkpoint and a few signatures (C2SP tlog-witness).
const maxAddCheckpointBody = 16 << 10

// statusOf is the one mapping of witness errors to HTTP statuses (C2SP
// tlog-witness add-checkpoint).
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrStaleSize), errors.Is(err, ErrFork), errors.Is(err, ErrRefused):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownLog):
		return http.StatusNotFound
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrBadProof):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrBadCheckpoint):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

var keyIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// NoticesResponse is the JSON answer of GET /notices/{keyid}: what this
// witness's reputation says about a builder key, per followed log.
type NoticesResponse struct {
	KeyID   string      `json:"key_id"`
	Flagged bool        `json:"flagged"`
	Notices []LogNotice `json:"notices"`
}

// LogNotice is a reputation notice about a key in one log.
type LogNotice struct {
	Log string `json:"log"`
	Notice
}

// handler serves the witness's HTTP interface:
//
//	POST /add-checkpoint   C2SP tlog-witness
//	GET  /notices/{keyid}  reputation notices of a builder key (JSON)
type handler struct {
	d      *Daemon
	logger *slog.Logger
}

// Handler returns the witness's HTTP handler.
func (d *Daemon) Handler() http.Handler {
	h := &handler{d: d, logger: d.logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", h.addCheckpoint)
	mux.HandleFunc("GET /notices/{keyid}", h.notices)
	return mux
}

func (h *handler) addCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAddCheckpointBody+1))
	if err != nil {
		http.Error(w, "witness: read body", http.StatusBadRequest)
		return
	}
	if len(body) > maxAddCheckpointBody {
		http.Error(w, "witness: request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	sig, err := h.d.AddCheckpoint(body)
	if err != nil {
		var stale *StaleError
		if errors.As(err, &stale) {
			// C2SP tlog-witness: 409 with the latest cosigned size.
			w.Header().Set("Content-Type", "text/x.tlog.size")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, "%d\n", stale.Size)
			return
		}
		status := statusOf(err)
		if status == http.StatusInternalServerError {
			h.logger.Error("witness: add-checkpoint failed", "err", err)
			http.Error(w, "witness: internal error", status)
			return
		}
		h.logger.Info("witness: add-checkpoint refused", "status", status, "err", err)
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(sig)
}

func (h *handler) notices(w http.ResponseWriter, r *http.Request) {
	keyID := r.PathValue("keyid")
	if !keyIDRE.MatchString(keyID) {
		http.Error(w, "witness: key id must be 64 lowercase hex digits", http.StatusBadRequest)
		return
	}
	resp := NoticesResponse{KeyID: keyID, Notices: []LogNotice{}}
	for _, lf := range h.d.logs {
		for _, n := range lf.notices(keyID) {
			resp.Notices = append(resp.Notices, LogNotice{Log: lf.name, Notice: n})
		}
	}
	slices.SortFunc(resp.Notices, func(a, b LogNotice) int {
		if a.Log < b.Log {
			return -1
		}
		if a.Log > b.Log {
			return 1
		}
		return 0
	})
	resp.Flagged = len(resp.Notices) > 0
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(resp)
}
