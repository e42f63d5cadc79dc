package koji

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on XML-RPC responses. The hub is a remote server: a response
// larger or deeper than these is refused rather than parsed.
const (
	// DefaultMaxResponseSize bounds a response body. listBuildRPMs of
	// texlive (~5,000 RPMs) is about 6 MiB of XML.
	DefaultMaxResponseSize = 32 << 20
	// DefaultMaxDepth bounds array/struct nesting. Koji's answers nest
	// three or four levels (a list of maps holding an "extra" map).
	DefaultMaxDepth = 32
)

// Errors for responses that are not well-formed XML-RPC, each checked with
// errors.Is. A *Fault is not one of these: it is a well-formed answer.
var (
	// ErrMalformed: the body is not XML, or not the XML-RPC grammar
	// (wrong root, missing or misplaced elements, bad scalar text).
	ErrMalformed = errors.New("koji: malformed XML-RPC response")
	// ErrUnknownType: a <value> holds an element that is not an XML-RPC type.
	ErrUnknownType = errors.New("koji: unknown XML-RPC value type")
	// ErrTooLarge: the body is larger than the configured limit.
	ErrTooLarge = errors.New("koji: XML-RPC response too large")
	// ErrTooDeep: arrays and structs nest deeper than the configured limit.
	ErrTooDeep = errors.New("koji: XML-RPC value nested too deeply")
)

// Kwargs are keyword arguments of a Koji call. Passed as the last argument,
// they are sent the way koji.encode_args does: a struct with the member
// "__starstar" set to true, merged with the keywords (koji/__init__.py
// encode_args, decoded by the hub's decode_args).
type Kwargs map[string]any

// Call is one method call of a multicall.
type Call struct {
	Method string
	Args   []any
}

// EncodeCall renders a <methodCall> (XML-RPC spec, "Request example").
// Supported argument types: nil, bool, int, int32, int64, float64, string,
// []byte (base64), []any, []string, []int64, map[string]any, Kwargs and
// []Call (for system.multicall).
func EncodeCall(method string, args ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<methodCall><methodName>")
	if err := xml.EscapeText(&b, []byte(method)); err != nil {
		return nil, fmt.Errorf("koji: encode method name: %w", err)
	}
	b.WriteString("</methodName><params>")
	for i, a := range args {
		if _, ok := a.(Kwargs); ok && i != len(args)-1 {
			return nil, fmt.Errorf("koji: encode %s: keyword arguments must be the last argument", method)
		}
		b.WriteString("<param>")
		if err := encodeValue(&b, a, 0); err != nil {
			return nil, fmt.Errorf("koji: encode %s argument %d: %w", method, i, err)
		}
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>\n")
	return b.Bytes(), nil
}

// EncodeResponse renders a successful <methodResponse> holding v. The
// fake hub in kojitest uses it; it is the same encoder as EncodeCall.
func EncodeResponse(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<methodResponse><params><param>")
	if err := encodeValue(&b, v, 0); err != nil {
		return nil, fmt.Errorf("koji: encode response: %w", err)
	}
	b.WriteString("</param></params></methodResponse>\n")
	return b.Bytes(), nil
}

// EncodeFault renders a fault <methodResponse> (XML-RPC spec, "Fault example").
func EncodeFault(f *Fault) []byte {
	b, err := EncodeFaultValue(f)
	if err != nil {
		// A fault holds an int and a string: encoding cannot fail.
		panic(err)
	}
	return b
}

// EncodeFaultValue is EncodeFault returning the error instead of panicking.
func EncodeFaultValue(f *Fault) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<methodResponse><fault>")
	if err := encodeValue(&b, map[string]any{"faultCode": f.Code, "faultString": f.String}, 0); err != nil {
		return nil, err
	}
	b.WriteString("</fault></methodResponse>\n")
	return b.Bytes(), nil
}

func encodeValue(b *bytes.Buffer, v any, depth int) error {
	if depth > DefaultMaxDepth {
		return ErrTooDeep
	}
	b.WriteString("<value>")
	switch x := v.(type) {
	case nil:
		// Python's xmlrpc with allow_none, which Koji enables.
		b.WriteString("<nil/>")
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case int:
		encodeInt(b, int64(x))
	case int32:
		encodeInt(b, int64(x))
	case int64:
		encodeInt(b, x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: double %v is not representable", ErrMalformed, x)
		}
		b.WriteString("<double>")
		b.WriteString(strconv.FormatFloat(x, 'f', -1, 64))
		b.WriteString("</double>")
	case string:
		if !utf8.ValidString(x) {
			return fmt.Errorf("%w: string is not UTF-8", ErrMalformed)
		}
		b.WriteString("<string>")
		if err := xml.EscapeText(b, []byte(x)); err != nil {
			return err
		}
		b.WriteString("</string>")
	case []byte:
		b.WriteString("<base64>")
		b.WriteString(base64.StdEncoding.EncodeToString(x))
		b.WriteString("</base64>")
	case []string:
		b.WriteString("<array><data>")
		for _, e := range x {
			if err := encodeValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case []int64:
		b.WriteString("<array><data>")
		for _, e := range x {
			encodeValueInt(b, e)
		}
		b.WriteString("</data></array>")
	case []any:
		b.WriteString("<array><data>")
		for _, e := range x {
			if err := encodeValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case []map[string]any:
		b.WriteString("<array><data>")
		for _, e := range x {
			if err := encodeValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case Kwargs:
		m := make(map[string]any, len(x)+1)
		for k, val := range x {
			m[k] = val
		}
		m["__starstar"] = true
		if err := encodeStruct(b, m, depth); err != nil {
			return err
		}
	case map[string]any:
		if err := encodeStruct(b, x, depth); err != nil {
			return err
		}
	case []Call:
		// system.multicall takes an array of {methodName, params} structs.
		b.WriteString("<array><data>")
		for _, c := range x {
			params := c.Args
			if params == nil {
				params = []any{}
			}
			if err := encodeValue(b, map[string]any{"methodName": c.Method, "params": params}, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	default:
		return fmt.Errorf("%w: cannot encode Go type %T", ErrUnknownType, v)
	}
	b.WriteString("</value>")
	return nil
}

func encodeValueInt(b *bytes.Buffer, n int64) {
	b.WriteString("<value>")
	encodeInt(b, n)
	b.WriteString("</value>")
}

// encodeInt writes <int> when the value fits 32 bits and <i8> otherwise,
// as koji.xmlrpcplus.ExtendedMarshaller.dump_int does.
func encodeInt(b *bytes.Buffer, n int64) {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		b.WriteString("<int>")
		b.WriteString(strconv.FormatInt(n, 10))
		b.WriteString("</int>")
		return
	}
	b.WriteString("<i8>")
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteString("</i8>")
}

func encodeStruct(b *bytes.Buffer, m map[string]any, depth int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("<struct>")
	for _, k := range keys {
		b.WriteString("<member><name>")
		if err := xml.EscapeText(b, []byte(k)); err != nil {
			return err
		}
		b.WriteString("</name>")
		if err := encodeValue(b, m[k], depth+1); err != nil {
			return err
		}
		b.WriteString("</member>")
	}
	b.WriteString("</struct>")
	return nil
}

// Limits configures DecodeResponse. Zero fields take the defaults.
type Limits struct {
	MaxSize  int64 // bytes; DefaultMaxResponseSize when 0
	MaxDepth int   // DefaultMaxDepth when 0
}

// DecodeResponse parses a <methodResponse>. It returns the single result
// value, or a *Fault when the response is a fault. Values decode to: nil
// (<nil/>), int64 (<int>, <i4>, <i8>), bool, float64, string (<string>,
// bare text and <dateTime.iso8601>, kept as the text Koji sent), []byte
// (<base64>), []any (<array>) and map[string]any (<struct>).
func DecodeResponse(r io.Reader, lim Limits) (any, error) {
	if lim.MaxSize <= 0 {
		lim.MaxSize = DefaultMaxResponseSize
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	body, err := io.ReadAll(io.LimitReader(r, lim.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("koji: read response: %w", err)
	}
	if int64(len(body)) > lim.MaxSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, lim.MaxSize)
	}
	p := &parser{d: xml.NewDecoder(bytes.NewReader(body)), maxDepth: lim.MaxDepth}
	p.d.Strict = true
	return p.response()
}

type parser struct {
	d        *xml.Decoder
	maxDepth int
	depth    int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d)", ErrMalformed, fmt.Sprintf(format, args...), p.d.InputOffset())
}

// raw returns the next token, refusing DTDs (no entity tricks).
func (p *parser) raw() (xml.Token, error) {
	tok, err := p.d.Token()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, ok := tok.(xml.Directive); ok {
		return nil, p.errorf("DOCTYPE or other directive not allowed")
	}
	return tok, nil
}

// next returns the next start or end element, skipping comments,
// processing instructions and whitespace; other text is an error.
func (p *parser) next() (xml.Token, error) {
	for {
		tok, err := p.raw()
		if err == io.EOF {
			return nil, p.errorf("unexpected end of document")
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return tok, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, p.errorf("unexpected text %q", truncate(string(t)))
			}
		}
	}
}

func (p *parser) expectStart(name string) error {
	tok, err := p.next()
	if err != nil {
		return err
	}
	s, ok := tok.(xml.StartElement)
	if !ok || s.Name.Local != name || s.Name.Space != "" {
		return p.errorf("want <%s>, got %s", name, describe(tok))
	}
	return nil
}

func (p *parser) expectEnd(name string) error {
	tok, err := p.next()
	if err != nil {
		return err
	}
	e, ok := tok.(xml.EndElement)
	if !ok || e.Name.Local != name {
		return p.errorf("want </%s>, got %s", name, describe(tok))
	}
	return nil
}

func (p *parser) response() (any, error) {
	tok, err := p.next()
	if err != nil {
		return nil, err
	}
	root, ok := tok.(xml.StartElement)
	if !ok || root.Name.Local != "methodResponse" || root.Name.Space != "" {
		return nil, p.errorf("root element is %s, want <methodResponse>", describe(tok))
	}
	tok, err = p.next()
	if err != nil {
		return nil, err
	}
	s, ok := tok.(xml.StartElement)
	if !ok {
		return nil, p.errorf("want <params> or <fault>, got %s", describe(tok))
	}
	var result any
	switch s.Name.Local {
	case "params":
		// A response carries exactly one param (XML-RPC spec, "Response format").
		if err := p.expectStart("param"); err != nil {
			return nil, err
		}
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		if result, err = p.value(); err != nil {
			return nil, err
		}
		if err := p.expectEnd("param"); err != nil {
			return nil, err
		}
		if err := p.expectEnd("params"); err != nil {
			return nil, err
		}
	case "fault":
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		f, err := faultFromValue(v)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		if err := p.expectEnd("fault"); err != nil {
			return nil, err
		}
		result = f
	default:
		return nil, p.errorf("want <params> or <fault>, got <%s>", s.Name.Local)
	}
	if err := p.expectEnd("methodResponse"); err != nil {
		return nil, err
	}
	for {
		tok, err := p.raw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, p.errorf("text after </methodResponse>")
			}
		case xml.Comment, xml.ProcInst:
		default:
			return nil, p.errorf("%s after </methodResponse>", describe(tok))
		}
	}
	if f, ok := result.(*Fault); ok {
		return nil, f
	}
	return result, nil
}

// faultFromValue reads the {faultCode, faultString} struct of a fault
// (XML-RPC spec, "Fault example"); Koji's multicall adds "traceback".
func faultFromValue(v any) (*Fault, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("fault value is %T, want struct", v)
	}
	code, ok := m["faultCode"].(int64)
	if !ok {
		return nil, fmt.Errorf("fault has no integer faultCode")
	}
	str, ok := m["faultString"].(string)
	if !ok {
		return nil, fmt.Errorf("fault has no string faultString")
	}
	if code < math.MinInt32 || code > math.MaxInt32 {
		return nil, fmt.Errorf("faultCode %d out of range", code)
	}
	return &Fault{Code: int(code), String: str}, nil
}

// value parses the content of a <value> whose start tag was consumed, up
// to and including </value>.
func (p *parser) value() (any, error) {
	var text []byte
	for {
		tok, err := p.raw()
		if err == io.EOF {
			return nil, p.errorf("unexpected end of document in <value>")
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text = append(text, t...)
		case xml.Comment, xml.ProcInst:
		case xml.EndElement:
			// A bare <value>text</value> is a string (XML-RPC spec, "Scalar <value>s").
			return string(text), nil
		case xml.StartElement:
			if len(bytes.TrimSpace(text)) != 0 {
				return nil, p.errorf("text mixed with <%s> in <value>", t.Name.Local)
			}
			v, err := p.typed(t)
			if err != nil {
				return nil, err
			}
			if err := p.expectEnd("value"); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

func (p *parser) typed(s xml.StartElement) (any, error) {
	if s.Name.Space != "" {
		return nil, fmt.Errorf("%w: <%s:%s>", ErrUnknownType, s.Name.Space, s.Name.Local)
	}
	switch s.Name.Local {
	case "array":
		return p.array()
	case "struct":
		return p.structValue()
	case "nil":
		if err := p.expectEnd("nil"); err != nil {
			return nil, err
		}
		return nil, nil
	case "string", "int", "i4", "i8", "boolean", "double", "dateTime.iso8601", "base64":
	default:
		return nil, fmt.Errorf("%w: <%s> (at byte %d)", ErrUnknownType, s.Name.Local, p.d.InputOffset())
	}
	text, err := p.text(s.Name.Local)
	if err != nil {
		return nil, err
	}
	switch s.Name.Local {
	case "string", "dateTime.iso8601":
		return text, nil
	case "int", "i4":
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 32)
		if err != nil {
			return nil, p.errorf("bad <%s> %q", s.Name.Local, truncate(text))
		}
		return n, nil
	case "i8":
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return nil, p.errorf("bad <i8> %q", truncate(text))
		}
		return n, nil
	case "boolean":
		switch strings.TrimSpace(text) {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
		return nil, p.errorf("bad <boolean> %q", truncate(text))
	case "double":
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, p.errorf("bad <double> %q", truncate(text))
		}
		return f, nil
	default: // base64
		// Python's encodebytes breaks lines every 76 characters.
		clean := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, text)
		b, err := base64.StdEncoding.Strict().DecodeString(clean)
		if err != nil {
			return nil, p.errorf("bad <base64>: %v", err)
		}
		return b, nil
	}
}

// text reads character data up to </name>; elements inside are an error.
func (p *parser) text(name string) (string, error) {
	var sb strings.Builder
	for {
		tok, err := p.raw()
		if err == io.EOF {
			return "", p.errorf("unexpected end of document in <%s>", name)
		}
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.Comment, xml.ProcInst:
		case xml.EndElement:
			return sb.String(), nil
		case xml.StartElement:
			return "", p.errorf("element <%s> inside <%s>", t.Name.Local, name)
		}
	}
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > p.maxDepth {
		return fmt.Errorf("%w: more than %d levels", ErrTooDeep, p.maxDepth)
	}
	return nil
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if err := p.expectStart("data"); err != nil {
		return nil, err
	}
	out := []any{}
	for {
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if t.Name.Local != "data" {
				return nil, p.errorf("want </data>, got %s", describe(tok))
			}
			if err := p.expectEnd("array"); err != nil {
				return nil, err
			}
			return out, nil
		case xml.StartElement:
			if t.Name.Local != "value" {
				return nil, p.errorf("want <value> in <data>, got <%s>", t.Name.Local)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
}

func (p *parser) structValue() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	out := map[string]any{}
	for {
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if t.Name.Local != "struct" {
				return nil, p.errorf("want </struct>, got %s", describe(tok))
			}
			return out, nil
		case xml.StartElement:
			if t.Name.Local != "member" {
				return nil, p.errorf("want <member> in <struct>, got <%s>", t.Name.Local)
			}
			if err := p.expectStart("name"); err != nil {
				return nil, err
			}
			name, err := p.text("name")
			if err != nil {
				return nil, err
			}
			if _, dup := out[name]; dup {
				return nil, p.errorf("duplicate struct member %q", truncate(name))
			}
			if err := p.expectStart("value"); err != nil {
				return nil, err
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			if err := p.expectEnd("member"); err != nil {
				return nil, err
			}
			out[name] = v
		}
	}
}

func describe(tok xml.Token) string {
	switch t := tok.(type) {
	case xml.StartElement:
		return "<" + t.Name.Local + ">"
	case xml.EndElement:
		return "</" + t.Name.Local + ">"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", tok)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// DecodeCall parses a <methodCall>: the method name and its parameters,
// decoded like DecodeResponse values. The fake hub in kojitest uses it.
func DecodeCall(r io.Reader, lim Limits) (string, []any, error) {
	if lim.MaxSize <= 0 {
		lim.MaxSize = DefaultMaxResponseSize
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	body, err := io.ReadAll(io.LimitReader(r, lim.MaxSize+1))
	if err != nil {
		return "", nil, fmt.Errorf("koji: read call: %w", err)
	}
	if int64(len(body)) > lim.MaxSize {
		return "", nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, lim.MaxSize)
	}
	p := &parser{d: xml.NewDecoder(bytes.NewReader(body)), maxDepth: lim.MaxDepth}
	p.d.Strict = true
	if err := p.expectStart("methodCall"); err != nil {
		return "", nil, err
	}
	if err := p.expectStart("methodName"); err != nil {
		return "", nil, err
	}
	method, err := p.text("methodName")
	if err != nil {
		return "", nil, err
	}
	args := []any{}
	tok, err := p.next()
	if err != nil {
		return "", nil, err
	}
	if s, ok := tok.(xml.StartElement); ok && s.Name.Local == "params" {
		for {
			tok, err := p.next()
			if err != nil {
				return "", nil, err
			}
			if _, ok := tok.(xml.EndElement); ok {
				break
			}
			if s, ok := tok.(xml.StartElement); !ok || s.Name.Local != "param" {
				return "", nil, p.errorf("want <param>, got %s", describe(tok))
			}
			if err := p.expectStart("value"); err != nil {
				return "", nil, err
			}
			v, err := p.value()
			if err != nil {
				return "", nil, err
			}
			if err := p.expectEnd("param"); err != nil {
				return "", nil, err
			}
			args = append(args, v)
		}
		tok, err = p.next()
		if err != nil {
			return "", nil, err
		}
	}
	if e, ok := tok.(xml.EndElement); !ok || e.Name.Local != "methodCall" {
		return "", nil, p.errorf("want </methodCall>, got %s", describe(tok))
	}
	return method, args, nil
}

// SplitKwargs undoes Kwargs encoding: when the last argument is a struct
// with "__starstar" true, it is removed and returned as keywords
// (koji/__init__.py decode_args).
func SplitKwargs(args []any) ([]any, Kwargs) {
	if len(args) == 0 {
		return args, Kwargs{}
	}
	m, ok := args[len(args)-1].(map[string]any)
	if !ok {
		return args, Kwargs{}
	}
	if star, _ := m["__starstar"].(bool); !star {
		return args, Kwargs{}
	}
	kw := Kwargs{}
	for k, v := range m {
		if k != "__starstar" {
			kw[k] = v
		}
	}
	return args[:len(args)-1], kw
}
