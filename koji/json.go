package koji

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrBadJSON: a JSON body from ResultsDB is malformed, too large, too
// deep, has a duplicate key, an unknown member or trailing data.
var ErrBadJSON = errors.New("koji: bad JSON")

const maxJSONDepth = 32

// decodeJSON parses at most limit bytes of one JSON value into generic
// values (map[string]any, []any, json.Number, string, bool, nil),
// refusing duplicate keys and trailing data. Reading members out of maps
// by exact name then leaves no room for case-folded matches.
func decodeJSON(r io.Reader, limit int64) (any, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrBadJSON, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadJSON, limit)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	v, err := jsonValue(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the value", ErrBadJSON)
	}
	return v, nil
}

func jsonValue(d *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrBadJSON, maxJSONDepth)
	}
	tok, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
				}
				k := kt.(string)
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("%w: duplicate key %q", ErrBadJSON, k)
				}
				v, err := jsonValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
			}
			return m, nil
		case '[':
			a := []any{}
			for d.More() {
				v, err := jsonValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
			}
			return a, nil
		}
		return nil, fmt.Errorf("%w: unexpected %v", ErrBadJSON, t)
	default:
		return t, nil
	}
}

// onlyKeys refuses members outside allowed.
func onlyKeys(what string, m map[string]any, allowed ...string) error {
	for k := range m {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: %s has unknown member %q", ErrBadJSON, what, k)
		}
	}
	return nil
}
