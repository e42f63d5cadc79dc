package attest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Go's encoding/json accepts duplicate keys (last wins), unknown fields
// (unless asked) and keys that match a field name only case-insensitively.
// An attacker could use either to make two parsers read one entry two ways,
// so every JSON document from outside first goes through checkJSON, which
// walks it once against the exact field names of the Go type it will be
// decoded into (RFC 8259 grammar, UTF-8, depth-limited), and only then
// through json.Unmarshal.

const maxDepth = 32

type schemaKind uint8

const (
	kindScalar schemaKind = iota // string, number, bool, time
	kindObject                   // a struct: exact field names
	kindArray                    // a slice
	kindMap                      // map[string]T: free keys, no duplicates
)

type schema struct {
	kind   schemaKind
	fields map[string]*schema
	names  []string
	elem   *schema
}

var (
	schemaMu    sync.Mutex
	schemaCache = map[reflect.Type]*schema{}
	timeType    = reflect.TypeFor[time.Time]()
)

// schemaFor returns the schema of t (cached).
func schemaFor(t reflect.Type) *schema {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	return buildSchema(t)
}

func buildSchema(t reflect.Type) *schema {
	if s, ok := schemaCache[t]; ok {
		return s
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := &schema{kind: kindScalar}
	schemaCache[t] = s
	switch {
	case t == timeType:
	case t.Kind() == reflect.Struct:
		s.kind = kindObject
		s.fields = map[string]*schema{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.fields[name] = buildSchema(f.Type)
			s.names = append(s.names, name)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		s.kind = kindArray
		s.elem = buildSchema(t.Elem())
	case t.Kind() == reflect.Map:
		s.kind = kindMap
		s.elem = buildSchema(t.Elem())
	}
	return s
}

// decodeStrict checks data against v's type with checkJSON and decodes it
// into v.
func decodeStrict(what string, data []byte, v any) error {
	if err := checkJSON(data, schemaFor(reflect.TypeOf(v))); err != nil {
		return fmt.Errorf("attest: %s: %w", what, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("attest: %s: %w: %v", what, ErrSyntax, err)
	}
	return nil
}

// checkJSON walks one JSON document against sc.
func checkJSON(data []byte, sc *schema) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	s := &jscan{data: data}
	s.ws()
	if err := s.value(sc, 0, "$"); err != nil {
		return err
	}
	s.ws()
	if s.pos != len(s.data) {
		return fmt.Errorf("%w at byte %d", ErrTrailingData, s.pos)
	}
	return nil
}

type jscan struct {
	data []byte
	pos  int
}

func (s *jscan) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, s.pos, fmt.Sprintf(format, args...))
}

func (s *jscan) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *jscan) value(sc *schema, depth int, path string) error {
	if depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	if s.pos >= len(s.data) {
		return s.errorf("unexpected end")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(sc, depth, path)
	case c == '[':
		if sc != nil && sc.kind != kindArray {
			return s.errorf("%s: array where none belongs", path)
		}
		s.pos++
		s.ws()
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.pos++
			return nil
		}
		var elem *schema
		if sc != nil {
			elem = sc.elem
		}
		for {
			s.ws()
			if err := s.value(elem, depth+1, path+"[]"); err != nil {
				return err
			}
			s.ws()
			if s.pos >= len(s.data) {
				return s.errorf("unterminated array")
			}
			if s.data[s.pos] == ']' {
				s.pos++
				return nil
			}
			if s.data[s.pos] != ',' {
				return s.errorf("want , or ] in array")
			}
			s.pos++
		}
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(s.data[s.pos:min(len(s.data), s.pos+5)]), lit) {
				s.pos += len(lit)
				return nil
			}
		}
		return s.errorf("invalid character %q", c)
	}
}

func (s *jscan) object(sc *schema, depth int, path string) error {
	if sc != nil && sc.kind != kindObject && sc.kind != kindMap {
		return s.errorf("%s: object where none belongs", path)
	}
	s.pos++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	var seen []string
	for {
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.errorf("want object key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		for _, k := range seen {
			if k == key {
				return fmt.Errorf("%w: %s.%q", ErrDuplicateKey, path, key)
			}
		}
		seen = append(seen, key)
		var child *schema
		if sc != nil {
			if sc.kind == kindMap {
				child = sc.elem
			} else if f, ok := sc.fields[key]; ok {
				child = f
			} else {
				for _, n := range sc.names {
					if strings.EqualFold(n, key) {
						return fmt.Errorf("%w: %s.%q for %q", ErrCaseFoldedKey, path, key, n)
					}
				}
				return fmt.Errorf("%w: %s.%q", ErrUnknownField, path, key)
			}
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.errorf("want : after key")
		}
		s.pos++
		s.ws()
		if err := s.value(child, depth+1, path+"."+key); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) {
			return s.errorf("unterminated object")
		}
		if s.data[s.pos] == '}' {
			s.pos++
			return nil
		}
		if s.data[s.pos] != ',' {
			return s.errorf("want , or } in object")
		}
		s.pos++
	}
}

// str scans a string at s.pos and returns its decoded value.
func (s *jscan) str() (string, error) {
	start := s.pos
	s.pos++
	escaped := false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			raw := s.data[start:s.pos]
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var out string
			if err := json.Unmarshal(raw, &out); err != nil {
				return "", s.errorf("bad string: %v", err)
			}
			return out, nil
		case c < 0x20:
			return "", s.errorf("control character in string")
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return "", s.errorf("unterminated escape")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return "", s.errorf("short \\u escape")
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return "", s.errorf("bad \\u escape")
					}
				}
				s.pos += 6
			default:
				return "", s.errorf("bad escape")
			}
		default:
			s.pos++
		}
	}
	return "", s.errorf("unterminated string")
}

// number scans an RFC 8259 number.
func (s *jscan) number() error {
	d := s.data
	if d[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(d) && d[s.pos] >= '0' && d[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(d) && d[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		return s.errorf("bad number")
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.errorf("bad number fraction")
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.errorf("bad number exponent")
		}
	}
	return nil
}
