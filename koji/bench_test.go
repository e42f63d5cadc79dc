package koji

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"testing"
)

// texliveSized is a listBuildRPMs answer with 5,000 RPMs, about the size
// of texlive's, encoded as the hub would.
func texliveSized(b *testing.B) []byte {
	b.Helper()
	rpms := make([]any, 5000)
	for i := range rpms {
		rpms[i] = map[string]any{
			"id": int64(40_000_000_000 + i), "name": "texlive-pkg" + strconv.Itoa(i), "version": "20230311",
			"release": "85.fc41", "nvr": "texlive-pkg" + strconv.Itoa(i) + "-20230311-85.fc41", "arch": "noarch",
			"epoch": int64(11), "draft": false, "payloadhash": "6b2f1c0a7d3e9f8b5a4c2d1e0f9a8b7c",
			"size": int64(123456), "buildtime": int64(1721244400), "build_id": int64(2612345),
			"buildroot_id": int64(52233441), "external_repo_id": int64(0), "external_repo_name": "INTERNAL",
			"metadata_only": false, "extra": nil,
		}
	}
	body, err := EncodeResponse(rpms)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecodeListBuildRPMs decodes and types a texlive-sized answer.
// Compare with BenchmarkXMLTokenize, the bare encoding/xml token loop over
// the same bytes (the yardstick: no parser built on encoding/xml can be
// faster).
func BenchmarkDecodeListBuildRPMs(b *testing.B) {
	body := texliveSized(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := DecodeResponse(bytes.NewReader(body), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := listOf("listBuildRPMs", v, RPMFromValue); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkXMLTokenize(b *testing.B) {
	body := texliveSized(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := xml.NewDecoder(bytes.NewReader(body))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
