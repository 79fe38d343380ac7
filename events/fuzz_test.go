package events

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seed adds every corpus file of testdata/bad to f.
func seed(f *testing.F) {
	for _, name := range corpusFiles(f) {
		b, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkErr holds for every decoder: no panic (the fuzzer catches those), and any error is a
// permanent *DecodeError with a known kind.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var de *DecodeError
	if !errors.As(err, &de) || !IsPermanent(err) || de.Kind == nil {
		t.Fatalf("error %v (%T) is not a permanent *DecodeError with a kind", err, err)
	}
}

func FuzzDecodeProvisioning(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeProvisioning(b)
		checkErr(t, err)
		if err == nil {
			if (in.Registry == nil) == (in.Presence == nil) {
				t.Fatalf("want exactly one of registry/presence: %+v", in)
			}
			if ValidateThingName(in.ThingName()) != nil {
				t.Fatalf("accepted bad thing name %q", in.ThingName())
			}
		}
	})
}

func FuzzDecodeBindingRequest(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeBindingRequest(b)
		checkErr(t, err)
		if err == nil && (ValidateThingName(r.ThingName) != nil || r.UserID == "" || r.RequestID == "") {
			t.Fatalf("accepted incomplete request %+v", r)
		}
	})
}

func FuzzDecodeTelemetry(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		tel, err := DecodeTelemetry("dev-42", b)
		checkErr(t, err)
		if err == nil {
			for k := range tel.Fields {
				_, _, err := tel.Number(k)
				checkErr(t, err)
			}
			_, _, err := tel.Number("a.b.c")
			checkErr(t, err)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	seed(f)
	f.Add([]byte(`{"specversion":"1.0","version":1,"id":"x","type":"binding.rejected","source":"s","time":"2026-11-23T14:02:11Z","thingName":"dev-42","data":{"reason":"already_bound"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeEnvelope(b)
		checkErr(t, err)
		if err == nil {
			_, err := env.DecodeData()
			if err != nil && !IsPermanent(err) {
				t.Fatalf("data error not permanent: %v", err)
			}
		}
	})
}
