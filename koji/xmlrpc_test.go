package koji

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func decodeFile(t *testing.T, name string) (any, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return DecodeResponse(bytes.NewReader(b), Limits{})
}

func TestDecodeRecordedGetBuild(t *testing.T) {
	v, err := decodeFile(t, "getBuild.xml")
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["epoch"] != nil {
		t.Errorf("epoch = %#v, want nil from <nil/>", m["epoch"])
	}
	if m["start_time"] != "20240717T19:25:02" {
		t.Errorf("dateTime.iso8601 = %#v, want the text as a string", m["start_time"])
	}
	if m["volume_name"] != "DEFAULT" {
		t.Errorf("bare text value = %#v, want string DEFAULT", m["volume_name"])
	}
	if m["draft"] != false {
		t.Errorf("draft = %#v, want false", m["draft"])
	}
	b, err := BuildFromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	want := Build{
		ID: 2612345, PackageID: 1802, PackageName: "hello", Name: "hello", Version: "2.12.1",
		Release: "7.fc41", NVR: "hello-2.12.1-7.fc41", State: BuildComplete, VolumeName: "DEFAULT",
		OwnerID: 3445, OwnerName: "releng", CreationTime: "2024-07-17 19:25:02.871003+00:00",
		CreationTS: 1721244302.871003, CompletionTime: "2024-07-17 19:31:52.431235+00:00",
		Source: "git+https://src.fedoraproject.org/rpms/hello.git#5f3c2a9e1d0b7c6a4e8f9d2b1a0c3e5f7a9b8c6d",
	}
	if b.TaskID == nil || *b.TaskID != 120998877 {
		t.Errorf("TaskID = %v, want 120998877", b.TaskID)
	}
	if b.CompletionTS == nil || *b.CompletionTS != 1721244712.431235 {
		t.Errorf("CompletionTS = %v, want 1721244712.431235 (a <double>)", b.CompletionTS)
	}
	src, _ := b.Extra["source"].(map[string]any)
	if src["original_url"] == nil {
		t.Errorf("Extra = %#v, want extra.source.original_url", b.Extra)
	}
	b.TaskID, b.CompletionTS, b.Extra = nil, nil, nil
	if !reflect.DeepEqual(*b, want) {
		t.Errorf("Build =\n%+v\nwant\n%+v", *b, want)
	}
}

func TestDecodeRecordedListBuildRPMs(t *testing.T) {
	v, err := decodeFile(t, "listBuildRPMs.xml")
	if err != nil {
		t.Fatal(err)
	}
	rpms, err := listOf("listBuildRPMs", v, RPMFromValue)
	if err != nil {
		t.Fatal(err)
	}
	if len(rpms) != 3 {
		t.Fatalf("got %d RPMs, want 3", len(rpms))
	}
	if rpms[0].ID != 40123456789 || rpms[0].Arch != "src" || rpms[0].Epoch != nil {
		t.Errorf("rpm 0 = %+v, want i8 id 40123456789, arch src, nil epoch", rpms[0])
	}
	if rpms[1].Size != 5368709120 {
		t.Errorf("rpm 1 size = %d, want the <i8> 5368709120", rpms[1].Size)
	}
	if rpms[2].Name != "hello-doc" || rpms[2].NVRA() != "hello-doc-2.12.1-7.fc41.noarch" {
		t.Errorf("rpm 2 = %s, want subpackage hello-doc-2.12.1-7.fc41.noarch", rpms[2].NVRA())
	}
	if rpms[2].Epoch == nil || *rpms[2].Epoch != 2 || rpms[2].BuildrootID != nil {
		t.Errorf("rpm 2 epoch/buildroot = %v/%v, want 2/nil", rpms[2].Epoch, rpms[2].BuildrootID)
	}
	if rpms[1].ExternalRepoName != "INTERNAL" || rpms[1].BuildID != 2612345 || rpms[1].PayloadHash != "0f1e2d3c4b5a69788796a5b4c3d2e1f0" {
		t.Errorf("rpm 1 = %+v", rpms[1])
	}
}

func TestDecodeRecordedSigsAndEvent(t *testing.T) {
	v, err := decodeFile(t, "queryRPMSigs.xml")
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := listOf("queryRPMSigs", v, RPMSigFromValue)
	if err != nil {
		t.Fatal(err)
	}
	want := []RPMSig{
		{RPMID: 40123456790, SigKey: "", SigHash: "3c1f5e7a9b2d4c6e8f0a1b3c5d7e9f01"},
		{RPMID: 40123456790, SigKey: "e99d6ad1", SigHash: "9a8b7c6d5e4f30211203f4e5d6c7b8a9"},
	}
	if !reflect.DeepEqual(sigs, want) {
		t.Errorf("sigs = %+v, want %+v", sigs, want)
	}
	v, err = decodeFile(t, "getLastEvent.xml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := EventFromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != 108899001 || e.TS != 1721250000.123456 {
		t.Errorf("event = %+v", e)
	}
}

func TestDecodeRecordedFault(t *testing.T) {
	_, err := decodeFile(t, "fault_nosuchbuild.xml")
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want a *Fault", err)
	}
	if f.Code != 1000 || f.String != "No such build: 'nosuch-1.0-1.fc41'" {
		t.Errorf("fault = %+v", f)
	}
	if !errors.Is(err, ErrNoSuchBuild) {
		t.Errorf("errors.Is(%v, ErrNoSuchBuild) = false", err)
	}
	other := &Fault{Code: FaultAuth, String: "No such build lookalike from another code"}
	if errors.Is(other, ErrNoSuchBuild) {
		t.Errorf("fault %d matched ErrNoSuchBuild", other.Code)
	}
	generic := &Fault{Code: FaultGeneric, String: "Invalid method: foo"}
	if errors.Is(generic, ErrNoSuchBuild) {
		t.Errorf("GenericError %q matched ErrNoSuchBuild", generic.String)
	}
}

func TestDecodeRecordedMulticall(t *testing.T) {
	v, err := decodeFile(t, "multicall.xml")
	if err != nil {
		t.Fatal(err)
	}
	arr := v.([]any)
	if len(arr) != 5 {
		t.Fatalf("%d entries, want 5", len(arr))
	}
	if got := arr[3].([]any)[0]; !bytes.Equal(got.([]byte), []byte("skyline")) {
		t.Errorf("base64 = %q, want skyline", got)
	}
	if got := arr[2].([]any)[0]; got != nil {
		t.Errorf("nil result = %#v", got)
	}
}

func TestDecodeBadInput(t *testing.T) {
	deep := strings.Repeat("<value><array><data>", 40) + strings.Repeat("</data></array></value>", 40)
	okWrap := func(v string) string {
		return "<?xml version='1.0'?><methodResponse><params><param>" + v + "</param></params></methodResponse>"
	}
	sentinels := []error{ErrMalformed, ErrUnknownType, ErrTooLarge, ErrTooDeep}
	tests := []struct {
		name string
		body string
		lim  Limits
		want error
	}{
		{"empty body", "", Limits{}, ErrMalformed},
		{"not XML", "this is not xml", Limits{}, ErrMalformed},
		{"unclosed", "<methodResponse><params>", Limits{}, ErrMalformed},
		{"HTML error page", "<html><body>502 Bad Gateway</body></html>", Limits{}, ErrMalformed},
		{"wrong root", "<methodCall><methodName>x</methodName></methodCall>", Limits{}, ErrMalformed},
		{"neither params nor fault", "<methodResponse><result/></methodResponse>", Limits{}, ErrMalformed},
		{"two params", "<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>", Limits{}, ErrMalformed},
		{"no param", "<methodResponse><params></params></methodResponse>", Limits{}, ErrMalformed},
		{"trailing element", okWrap("<value>a</value>") + "<extra/>", Limits{}, ErrMalformed},
		{"trailing text", okWrap("<value>a</value>") + "junk", Limits{}, ErrMalformed},
		{"doctype", "<!DOCTYPE x [<!ENTITY a 'b'>]>" + okWrap("<value>a</value>"), Limits{}, ErrMalformed},
		{"unknown type", okWrap("<value><bigdecimal>1.0</bigdecimal></value>"), Limits{}, ErrUnknownType},
		{"namespaced type", okWrap(`<value><ex:i8 xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions">1</ex:i8></value>`), Limits{}, ErrUnknownType},
		{"bad int", okWrap("<value><int>12a</int></value>"), Limits{}, ErrMalformed},
		{"int beyond 32 bits", okWrap("<value><int>4294967296</int></value>"), Limits{}, ErrMalformed},
		{"bad i8", okWrap("<value><i8>99999999999999999999</i8></value>"), Limits{}, ErrMalformed},
		{"bad boolean", okWrap("<value><boolean>2</boolean></value>"), Limits{}, ErrMalformed},
		{"nan double", okWrap("<value><double>nan</double></value>"), Limits{}, ErrMalformed},
		{"bad base64", okWrap("<value><base64>!!!</base64></value>"), Limits{}, ErrMalformed},
		{"element in string", okWrap("<value><string>a<b/>c</string></value>"), Limits{}, ErrMalformed},
		{"text mixed with type", okWrap("<value>x<int>1</int></value>"), Limits{}, ErrMalformed},
		{"nil with content", okWrap("<value><nil>x</nil></value>"), Limits{}, ErrMalformed},
		{"duplicate member", okWrap("<value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value>"), Limits{}, ErrMalformed},
		{"member without value", okWrap("<value><struct><member><name>a</name></member></struct></value>"), Limits{}, ErrMalformed},
		{"array without data", okWrap("<value><array><value>1</value></array></value>"), Limits{}, ErrMalformed},
		{"fault without code", "<methodResponse><fault><value><struct><member><name>faultString</name><value>x</value></member></struct></value></fault></methodResponse>", Limits{}, ErrMalformed},
		{"fault not a struct", "<methodResponse><fault><value><int>1</int></value></fault></methodResponse>", Limits{}, ErrMalformed},
		{"too large", okWrap("<value><string>" + strings.Repeat("x", 2000) + "</string></value>"), Limits{MaxSize: 1024}, ErrTooLarge},
		{"too deep", okWrap(deep), Limits{}, ErrTooDeep},
		{"too deep for a small limit", okWrap("<value><array><data><value><array><data></data></array></value></data></array></value>"), Limits{MaxDepth: 1}, ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := DecodeResponse(strings.NewReader(tt.body), tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeResponse = %#v, %v; want %v", v, err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
			var f *Fault
			if errors.As(err, &f) {
				t.Errorf("bad input reported as a fault: %v", err)
			}
		})
	}
}

func TestEncodeCallRoundTrip(t *testing.T) {
	args := []any{
		"hello-1.0-1", int64(42), int64(1) << 40, true, 1.5, nil, []byte{0, 1, 2, 255},
		[]any{"a", int64(1)}, map[string]any{"k": "v", "n": nil},
		Kwargs{"strict": true, "completeAfter": "2024-07-17 00:00:00"},
	}
	body, err := EncodeCall("getBuild", args...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte("<i8>1099511627776</i8>")) || !bytes.Contains(body, []byte("<int>42</int>")) {
		t.Errorf("ints not encoded as <int>/<i8> by size: %s", body)
	}
	if !bytes.Contains(body, []byte("<name>__starstar</name><value><boolean>1</boolean></value>")) {
		t.Errorf("kwargs not encoded with __starstar: %s", body)
	}
	method, got, err := DecodeCall(bytes.NewReader(body), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if method != "getBuild" {
		t.Errorf("method = %q", method)
	}
	pos, kw := SplitKwargs(got)
	wantKw := Kwargs{"strict": true, "completeAfter": "2024-07-17 00:00:00"}
	if !reflect.DeepEqual(kw, wantKw) {
		t.Errorf("kwargs = %#v, want %#v", kw, wantKw)
	}
	if !reflect.DeepEqual(pos, args[:len(args)-1]) {
		t.Errorf("args = %#v\nwant %#v", pos, args[:len(args)-1])
	}
}

func TestEncodeRejects(t *testing.T) {
	if _, err := EncodeCall("x", Kwargs{"a": 1}, "later"); err == nil {
		t.Error("Kwargs before another argument was accepted")
	}
	if _, err := EncodeCall("x", struct{}{}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("struct{} argument: err = %v, want ErrUnknownType", err)
	}
	if _, err := EncodeCall("x", math.NaN()); !errors.Is(err, ErrMalformed) {
		t.Errorf("NaN argument: err = %v, want ErrMalformed", err)
	}
	if _, err := EncodeCall("x", "\xff"); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-UTF-8 argument: err = %v, want ErrMalformed", err)
	}
}

func TestTypedConversionRejectsWrongShapes(t *testing.T) {
	tests := []struct {
		name string
		conv func() error
	}{
		{"build not a struct", func() error { _, err := BuildFromValue([]any{}); return err }},
		{"build without nvr", func() error {
			_, err := BuildFromValue(map[string]any{"id": int64(1), "name": "a", "version": "1", "release": "1", "state": int64(1)})
			return err
		}},
		{"build id as string", func() error {
			_, err := BuildFromValue(map[string]any{"id": "1", "name": "a", "version": "1", "release": "1", "nvr": "a-1-1", "state": int64(1)})
			return err
		}},
		{"rpm epoch as string", func() error {
			_, err := RPMFromValue(map[string]any{"id": int64(1), "name": "a", "version": "1", "release": "1", "arch": "noarch", "epoch": "0"})
			return err
		}},
		{"event without ts", func() error { _, err := EventFromValue(map[string]any{"id": int64(1)}); return err }},
		{"list not an array", func() error { _, err := listOf("x", map[string]any{}, RPMFromValue); return err }},
	}
	for _, tt := range tests {
		if err := tt.conv(); !errors.Is(err, ErrBadResult) {
			t.Errorf("%s: err = %v, want ErrBadResult", tt.name, err)
		}
	}
}

// FuzzDecodeResponse checks that any accepted response re-encodes to one
// that decodes to the same value, and that nothing panics.
func FuzzDecodeResponse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed corpus in testdata: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("<methodResponse><params><param><value><array><data><value><i8>-1</i8></value></data></array></value></param></params></methodResponse>"))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := DecodeResponse(bytes.NewReader(body), Limits{MaxSize: 1 << 20})
		if err != nil {
			return
		}
		again, err := EncodeResponse(v)
		if err != nil {
			t.Fatalf("decoded value %#v does not re-encode: %v", v, err)
		}
		v2, err := DecodeResponse(bytes.NewReader(again), Limits{MaxSize: 4 << 20})
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed the value:\n%#v\n%#v", v, v2)
		}
	})
}

func TestDecodeScalars(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  any
	}{
		{"<i4>-7</i4>", int64(-7)},
		{"<int> 2147483647 </int>", int64(2147483647)},
		{"<i8>-9223372036854775808</i8>", int64(math.MinInt64)},
		{"<boolean>1</boolean>", true},
		{"<double>-0.5</double>", -0.5},
		{"<double>1721244712</double>", float64(1721244712)},
		{"<string/>", ""},
		{"<string>a &amp; &lt;b&gt;</string>", "a & <b>"},
		{"", ""},
		{"  bare text  ", "  bare text  "},
		{"<dateTime.iso8601>20240717T19:25:02</dateTime.iso8601>", "20240717T19:25:02"},
		{"<base64>c2t5\nbGluZQ==\n</base64>", []byte("skyline")},
		{"<nil/>", nil},
		{"<array><data/></array>", []any{}},
		{"<struct/>", map[string]any{}},
		{" <!-- a comment --> <int>1</int> ", int64(1)},
	} {
		body := "<methodResponse><params><param><value>" + tt.value + "</value></param></params></methodResponse>"
		got, err := DecodeResponse(strings.NewReader(body), Limits{})
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tt.value, got, err, tt.want)
		}
	}
}

func TestDecodeCallRecorded(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "call_multicall.xml"))
	if err != nil {
		t.Fatal(err)
	}
	method, args, err := DecodeCall(bytes.NewReader(b), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	calls := args[0].([]any)
	first := calls[0].(map[string]any)
	pos, kw := SplitKwargs(first["params"].([]any))
	if method != "system.multicall" || len(calls) != 2 || first["methodName"] != "getBuild" ||
		!reflect.DeepEqual(pos, []any{"hello-2.12.1-7.fc41"}) || !reflect.DeepEqual(kw, Kwargs{"strict": true}) {
		t.Errorf("decoded %s %#v", method, args)
	}
	for _, bad := range []string{"<methodResponse/>", "<methodCall><params/></methodCall>", "<methodCall><methodName>x</methodName><params><value/></params></methodCall>"} {
		if _, _, err := DecodeCall(strings.NewReader(bad), Limits{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDecodeCall: any accepted call re-encodes to one that decodes the same.
func FuzzDecodeCall(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "call_multicall.xml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("<methodCall><methodName>getLastEvent</methodName></methodCall>"))
	f.Fuzz(func(t *testing.T, body []byte) {
		method, args, err := DecodeCall(bytes.NewReader(body), Limits{MaxSize: 1 << 20})
		if err != nil {
			return
		}
		again, err := EncodeCall(method, args...)
		if err != nil {
			t.Fatalf("decoded call %q %#v does not re-encode: %v", method, args, err)
		}
		m2, a2, err := DecodeCall(bytes.NewReader(again), Limits{MaxSize: 4 << 20})
		if err != nil || m2 != method || !reflect.DeepEqual(a2, args) {
			t.Fatalf("round trip: %q %#v -> %q %#v, %v", method, args, m2, a2, err)
		}
	})
}
