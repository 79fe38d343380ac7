package events

import "testing"

func BenchmarkDecodeTelemetry(b *testing.B) {
	p := []byte(`{"temperature":21.5,"battery":87,"ts":1795441762000,"env":{"humidity":40.2,"pressure":1013}}`)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTelemetry("dev-42", p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeProvisioning(b *testing.B) {
	p := []byte(`{"eventType":"THING_EVENT","eventId":"f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853","timestamp":1795441762000,"operation":"CREATED","accountId":"123456789012","thingId":"b604f69c-aa9a-4d4a-829e-c480e958a0b5","thingName":"dev-42","versionNumber":1,"thingTypeName":null,"attributes":{"mac":"00:11:22:33:44:55","region":"eu"}}`)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeProvisioning(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRejectOversized(b *testing.B) {
	p := make([]byte, MaxInputBytes+1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTelemetry("dev-42", p); err == nil {
			b.Fatal("accepted")
		}
	}
}
