package kinesis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

func recv(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

// With a window of one, processing order is strict: a Nacked record comes back before the next.
func TestNackStrictOrderWithWindowOfOne(t *testing.T) {
	e := newEnv(t, 1)
	publishN(t, e.publisher(t), e.stream, "n", 12, 3)
	cfg := e.subConfig("g", "w")
	cfg.MaxInFlight = 1
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	nacks := map[string]int{"n-3": 2, "n-7": 1}
	for len(got) < 15 {
		m := recv(t, ch)
		p := string(m.Payload)
		got = append(got, p)
		if nacks[p] > 0 {
			nacks[p]--
			m.Nack()
			continue
		}
		m.Ack()
	}
	want := []string{"n-0", "n-1", "n-2", "n-3", "n-3", "n-3", "n-4", "n-5", "n-6", "n-7", "n-7", "n-8", "n-9", "n-10", "n-11"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries\n got %v\nwant %v", got, want)
	}
}

// With a window, a Nack of the head withdraws every later delivery not yet acked (their contexts
// are cancelled, their Acks ignored) and redelivers them in order after the nacked one; later
// deliveries already acked are not redelivered. The checkpoint never passes the nacked record
// until it is acked.
func TestNackRedeliversFromTheNackedRecordInOrder(t *testing.T) {
	e := newEnv(t, 1)
	publishN(t, e.publisher(t), e.stream, "n", 20, 5)
	cfg := e.subConfig("g", "w")
	cfg.MaxInFlight = 10 // n-10 cannot be delivered before the head moves
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]*message.Message, 10)
	for i := range first {
		first[i] = recv(t, ch)
		if want := fmt.Sprintf("n-%d", i); string(first[i].Payload) != want {
			t.Fatalf("delivery %d is %s, want %s", i, first[i].Payload, want)
		}
	}
	// Acks of 0..2 and 8, then a Nack of 3 while 4..7 and 9 are still in flight.
	for _, i := range []int{0, 1, 2, 8} {
		first[i].Ack()
	}
	first[3].Nack()
	// The withdrawal is visible: wait for it rather than for a fixed time.
	waitFor(t, 5*time.Second, "withdrawal of n-9", func() bool { return first[9].Context().Err() != nil })
	var again []string
	for len(again) < 6 {
		m := recv(t, ch)
		again = append(again, string(m.Payload))
		m.Ack()
	}
	if want := "[n-3 n-4 n-5 n-6 n-7 n-9]"; fmt.Sprint(again) != want {
		t.Fatalf("redeliveries %v, want %v", again, want)
	}
	for _, i := range []int{4, 5, 6, 7, 9} {
		select {
		case <-first[i].Context().Done():
		default:
			t.Errorf("withdrawn delivery n-%d still has a live context", i)
		}
		first[i].Ack() // ignored: already redelivered
	}
	var last string
	for i := 10; i < 20; i++ {
		m := recv(t, ch)
		last = m.Metadata.Get(MetadataSequenceNumber)
		if want := fmt.Sprintf("n-%d", i); string(m.Payload) != want {
			t.Fatalf("got %s, want %s", m.Payload, want)
		}
		m.Ack()
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range e.leasesOf(t, "g") {
		if l.Checkpoint != last || l.Owner != "" {
			t.Errorf("lease %+v, want checkpoint %s (the last record) and released", l, last)
		}
	}
}

// A graceful stop with a Nacked record in flight checkpoints just before it, so the next worker
// starts from the nacked record.
func TestNackThenCloseCheckpointsBeforeTheNackedRecord(t *testing.T) {
	e := newEnv(t, 1)
	publishN(t, e.publisher(t), e.stream, "n", 10, 5)
	sub := e.subscriber(t, e.subConfig("g", "w1"))
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	var seqOf4 string
	for i := 0; i < 6; i++ {
		m := recv(t, ch)
		if i == 4 {
			seqOf4 = m.Metadata.Get(MetadataSequenceNumber)
			m.Nack()
			break
		}
		m.Ack()
	}
	go func() {
		for m := range ch {
			m.Nack()
		}
	}()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	sub2 := e.subscriber(t, e.subConfig("g", "w2"))
	ch2, err := sub2.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, ch2)
	if string(m.Payload) != "n-4" || m.Metadata.Get(MetadataSequenceNumber) != seqOf4 {
		t.Fatalf("after restart got %s (seq %s), want n-4 (seq %s)", m.Payload, m.Metadata.Get(MetadataSequenceNumber), seqOf4)
	}
	m.Ack()
}

// A Nack behind un-acked deliveries is acted on without waiting for them: the nacked record and
// the later un-acked ones are redelivered while the earlier ones stay in flight, and the
// checkpoint only moves once all of them are acked.
func TestNackBehindInFlightDeliveries(t *testing.T) {
	e := newEnv(t, 1)
	publishN(t, e.publisher(t), e.stream, "n", 10, 5)
	cfg := e.subConfig("g", "w")
	cfg.MaxInFlight = 10
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]*message.Message, 10)
	for i := range first {
		first[i] = recv(t, ch)
	}
	first[7].Ack()
	first[5].Nack()
	waitFor(t, 5*time.Second, "withdrawal of n-6", func() bool { return first[6].Context().Err() != nil })
	var again []string
	for len(again) < 4 {
		m := recv(t, ch)
		again = append(again, string(m.Payload))
		m.Ack()
	}
	if want := "[n-5 n-6 n-8 n-9]"; fmt.Sprint(again) != want {
		t.Fatalf("redeliveries %v, want %v", again, want)
	}
	for i := range 5 {
		if first[i].Context().Err() != nil {
			t.Fatalf("n-%d, before the Nack, was withdrawn", i)
		}
	}
	time.Sleep(3 * cfg.CheckpointInterval)
	if l := e.leasesOf(t, "g")["shardId-000000000000"]; l.Checkpoint != "" {
		t.Fatalf("checkpoint %q written while n-0..n-4 are un-acked", l.Checkpoint)
	}
	for i := range 5 {
		first[i].Ack()
	}
	last := first[9].Metadata.Get(MetadataSequenceNumber)
	waitFor(t, 5*time.Second, "checkpoint at n-9", func() bool {
		return e.leasesOf(t, "g")["shardId-000000000000"].Checkpoint == last
	})
}
