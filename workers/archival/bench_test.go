package archival

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"strconv"
	"testing"
	"time"

	"github.com/thingpipe/thingpipe/events"
)

// BenchmarkBatch500 measures building the lines of, sorting and compressing a 500-record batch.
func BenchmarkBatch500(b *testing.B) {
	tel, err := events.DecodeTelemetry("dev-42", []byte(`{"temperature":21.5,"battery":87,"ts":1795441762000}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var size int
	for b.Loop() {
		batch := make(Batch, 0, 500)
		for i := range 500 {
			r, err := NewRecord(tel, "shardId-000000000000", "4959033827149025660855969253836157109592157598913"+strconv.Itoa(1000000+i), arrival0.Add(time.Duration(i)*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, r)
		}
		batch.Sort()
		body, err := batch.Body()
		if err != nil {
			b.Fatal(err)
		}
		size = len(body)
	}
	b.ReportMetric(float64(size)/500, "gzip-bytes/record")
}

// Handle is a watermill handler.
var _ message.NoPublishHandlerFunc = (*Archiver)(nil).Handle
