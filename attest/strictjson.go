package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Go's encoding/json accepts duplicate keys (last wins), unknown fields
// (unless asked) and keys that match a field name only case-insensitively.
// An attacker could use either to make two parsers read one entry two ways.
// So JSON from outside is decoded here instead, in one pass over the bytes
// (RFC 8259 grammar, UTF-8, depth-limited) that matches every object key
// against the exact field names of the Go type it fills. It knows only the
// kinds skyline's entry types use: structs, slices, map[string]T, strings,
// integers, floats, bools and time.Time (RFC 3339).

const maxDepth = 32

type schemaKind uint8

const (
	kindScalar schemaKind = iota // string, number, bool, time
	kindObject                   // a struct: exact field names
	kindArray                    // a slice
	kindMap                      // map[string]T: free keys, no duplicates
)

type schema struct {
	typ    reflect.Type
	kind   schemaKind
	fields map[string]field
	names  []string
	elem   *schema
}

type field struct {
	name  string // the JSON name, the key in schema.fields
	index int
	sc    *schema
}

var (
	schemaMu    sync.Mutex                   // serializes building schemaCache
	schemaCache = map[reflect.Type]*schema{} // guarded by schemaMu
	schemaReady sync.Map                     // reflect.Type -> *schema, complete schemas only
	timeType    = reflect.TypeFor[time.Time]()
)

// schemaFor returns the schema of t (cached: Parse runs concurrently on
// the log's hot path, so the common case takes no lock).
func schemaFor(t reflect.Type) *schema {
	if s, ok := schemaReady.Load(t); ok {
		return s.(*schema)
	}
	schemaMu.Lock()
	defer schemaMu.Unlock()
	s := buildSchema(t)
	schemaReady.Store(t, s)
	return s
}

func buildSchema(t reflect.Type) *schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := schemaCache[t]; ok {
		return s
	}
	s := &schema{typ: t, kind: kindScalar}
	schemaCache[t] = s
	switch {
	case t == timeType:
	case t.Kind() == reflect.Struct:
		s.kind = kindObject
		s.fields = map[string]field{}
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
			s.fields[name] = field{name: name, index: i, sc: buildSchema(f.Type)}
			s.names = append(s.names, name)
		}
	case t.Kind() == reflect.Slice:
		s.kind = kindArray
		s.elem = buildSchema(t.Elem())
	case t.Kind() == reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic("attest: strict JSON map key of type " + t.Key().String())
		}
		s.kind = kindMap
		s.elem = buildSchema(t.Elem())
	}
	return s
}

// decodeStrict decodes the JSON document data into v (a pointer) strictly.
func decodeStrict(what string, data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("attest: %s: decode into %T", what, v)
	}
	if err := unmarshalStrict(data, schemaFor(rv.Type()), rv.Elem()); err != nil {
		return fmt.Errorf("attest: %s: %w", what, err)
	}
	return nil
}

// unmarshalStrict decodes one JSON document into v, which has schema sc.
func unmarshalStrict(data []byte, sc *schema, v reflect.Value) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	s := &jscan{data: data}
	s.ws()
	if err := s.value(sc, v, 0, "$"); err != nil {
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

// value decodes the value at s.pos into v (when v is valid; otherwise it
// only checks it). sc is v's schema, nil for values that are only checked.
func (s *jscan) value(sc *schema, v reflect.Value, depth int, path string) error {
	if depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	if s.pos >= len(s.data) {
		return s.errorf("unexpected end")
	}
	c := s.data[s.pos]
	if c == 'n' {
		// null leaves the Go zero value, as encoding/json does.
		return s.literal("null")
	}
	if v.IsValid() && v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	switch {
	case c == '{':
		return s.object(sc, v, depth, path)
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
			var ev reflect.Value
			if v.IsValid() {
				n := v.Len()
				if n == v.Cap() {
					v.Grow(max(4, n))
				}
				v.SetLen(n + 1)
				ev = v.Index(n)
			}
			if err := s.value(elem, ev, depth+1, path); err != nil {
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
		str, err := s.str()
		if err != nil || !v.IsValid() {
			return err
		}
		switch {
		case v.Type() == timeType:
			var t time.Time
			if err := t.UnmarshalText([]byte(str)); err != nil {
				return s.errorf("%s: bad RFC 3339 time %q", path, trunc(str))
			}
			v.Set(reflect.ValueOf(t))
		case v.Kind() == reflect.String:
			v.SetString(str)
		default:
			return s.errorf("%s: string where none belongs", path)
		}
		return nil
	case c == '-' || c >= '0' && c <= '9':
		start := s.pos
		if err := s.number(); err != nil || !v.IsValid() {
			return err
		}
		raw := string(s.data[start:s.pos])
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil || v.OverflowInt(n) {
				return s.errorf("%s: %s is not an integer of %s", path, trunc(raw), v.Type())
			}
			v.SetInt(n)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			n, err := strconv.ParseUint(raw, 10, 64)
			if err != nil || v.OverflowUint(n) {
				return s.errorf("%s: %s is not an integer of %s", path, trunc(raw), v.Type())
			}
			v.SetUint(n)
		case reflect.Float32, reflect.Float64:
			f, err := strconv.ParseFloat(raw, 64)
			if err != nil || v.OverflowFloat(f) {
				return s.errorf("%s: %s is out of range", path, trunc(raw))
			}
			v.SetFloat(f)
		default:
			return s.errorf("%s: number where none belongs", path)
		}
		return nil
	case c == 't' || c == 'f':
		lit := "true"
		if c == 'f' {
			lit = "false"
		}
		if err := s.literal(lit); err != nil || !v.IsValid() {
			return err
		}
		if v.Kind() != reflect.Bool {
			return s.errorf("%s: boolean where none belongs", path)
		}
		v.SetBool(c == 't')
		return nil
	default:
		return s.errorf("invalid character %q", c)
	}
}

func (s *jscan) literal(lit string) error {
	if !strings.HasPrefix(string(s.data[s.pos:min(len(s.data), s.pos+len(lit))]), lit) {
		return s.errorf("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

func (s *jscan) object(sc *schema, v reflect.Value, depth int, path string) error {
	if sc != nil && sc.kind != kindObject && sc.kind != kindMap {
		return s.errorf("%s: object where none belongs", path)
	}
	if v.IsValid() && sc.kind == kindMap && v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	s.pos++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	// Keys stay views of the input (or of their unescaped copy): a struct
	// field's key is only looked up, so it need not become a string.
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.errorf("want object key")
		}
		kb, err := s.strBytes()
		if err != nil {
			return err
		}
		for _, k := range seen {
			if bytes.Equal(k, kb) {
				return fmt.Errorf("%w: %s.%q", ErrDuplicateKey, path, kb)
			}
		}
		seen = append(seen, kb)
		var child *schema
		var cv, mapElem reflect.Value
		var key string
		if sc != nil && sc.kind == kindObject {
			f, ok := sc.fields[string(kb)]
			if !ok {
				key = string(kb)
				for _, n := range sc.names {
					if strings.EqualFold(n, key) {
						return fmt.Errorf("%w: %s.%q for %q", ErrCaseFoldedKey, path, key, n)
					}
				}
				return fmt.Errorf("%w: %s.%q", ErrUnknownField, path, key)
			}
			key = f.name
			child = f.sc
			if v.IsValid() {
				cv = v.Field(f.index)
			}
		} else {
			key = string(kb)
			if sc != nil {
				child = sc.elem
				if v.IsValid() {
					mapElem = reflect.New(v.Type().Elem()).Elem()
					cv = mapElem
				}
			}
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.errorf("want : after key")
		}
		s.pos++
		s.ws()
		if err := s.value(child, cv, depth+1, key); err != nil {
			return err
		}
		if mapElem.IsValid() {
			v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), mapElem)
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
	b, err := s.strBytes()
	return string(b), err
}

// strBytes scans a string at s.pos and returns its decoded value: a view
// of s.data when the string has no escapes, else a fresh copy.
func (s *jscan) strBytes() ([]byte, error) {
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
				return raw[1 : len(raw)-1], nil
			}
			var out string
			if err := json.Unmarshal(raw, &out); err != nil {
				return nil, s.errorf("bad string: %v", err)
			}
			return []byte(out), nil
		case c < 0x20:
			return nil, s.errorf("control character in string")
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return nil, s.errorf("unterminated escape")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return nil, s.errorf("short \\u escape")
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, s.errorf("bad \\u escape")
					}
				}
				s.pos += 6
			default:
				return nil, s.errorf("bad escape")
			}
		default:
			s.pos++
		}
	}
	return nil, s.errorf("unterminated string")
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
