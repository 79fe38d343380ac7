package kinesis

import (
	"bytes"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCompareSeq(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "2", -1},
		{"10", "9", 1},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692538361571095921575989136588898", 0},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692540925702759324208523137515618", -1},
		{"100000000000000000000000000000000000000", "99999999999999999999999999999999999999", 1},
		{"007", "7", 0},
		{"", "0", 0},
		{"", "1", -1},
	} {
		if got := compareSeq(tc.a, tc.b); got != tc.want {
			t.Errorf("compareSeq(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareSeq(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareSeq(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		uuid string
		meta map[string]string
		data []byte
	}{
		{"empty", "u", nil, nil},
		{"json", "0f8a4f1e-3c1b-4c55-9d0b-2b1c8f2f6a10", map[string]string{"a": "1", "kinesis.partition_key": "dev-1"}, []byte(`{"t":1}`)},
		{"binary", "x", map[string]string{"": ""}, []byte{0, 'T', 'P', 1, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := appendEnvelope(nil, tc.uuid, tc.meta, tc.data)
			if len(rec) > envelopeSize(tc.uuid, tc.meta, tc.data) {
				t.Errorf("envelopeSize %d below actual %d", envelopeSize(tc.uuid, tc.meta, tc.data), len(rec))
			}
			id, meta, payload, err := decodeEnvelope(rec)
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.uuid || !bytes.Equal(payload, tc.data) || (len(meta)+len(tc.meta) > 0 && !cmp.Equal(meta, tc.meta)) {
				t.Errorf("got %q %v %q", id, meta, payload)
			}
		})
	}
}

func TestEnvelopeRejectsDamage(t *testing.T) {
	good := appendEnvelope(nil, "uuid", map[string]string{"k": "v"}, []byte("payload"))
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"raw json", []byte(`{"temperature":21}`), errNotEnvelope},
		{"too short", []byte{0, 'T'}, errNotEnvelope},
		{"truncated uuid", good[:6], &EnvelopeError{}},
		{"huge count", append(append([]byte{}, envelopeMagic[:]...), 0, 0xff, 0xff, 0xff, 0xff, 0x0f), &EnvelopeError{}},
		{"truncated value", good[:len(good)-len("payload")-1], &EnvelopeError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := decodeEnvelope(tc.data)
			var ee *EnvelopeError
			switch want := tc.want.(type) {
			case *EnvelopeError:
				if !errors.As(err, &ee) {
					t.Fatalf("err = %v, want *EnvelopeError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, "u", map[string]string{"k": "v"}, []byte("p")))
	f.Add([]byte(`{"a":1}`))
	f.Add(envelopeMagic[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		id, meta, payload, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes when its metadata is canonical.
		again := appendEnvelope(nil, id, meta, payload)
		id2, meta2, payload2, err := decodeEnvelope(again)
		if err != nil || id2 != id || !bytes.Equal(payload2, payload) || len(meta2) != len(meta) {
			t.Fatalf("re-decode mismatch: %v", err)
		}
	})
}

func TestRecordUUIDIsDeterministic(t *testing.T) {
	a := recordUUID("s", "shardId-000000000000", "1")
	if a != recordUUID("s", "shardId-000000000000", "1") {
		t.Fatal("not deterministic")
	}
	if a == recordUUID("s", "shardId-000000000000", "2") || a == recordUUID("s", "shardId-000000000001", "1") {
		t.Fatal("collides across positions")
	}
}

func TestPlanLeases(t *testing.T) {
	now := time.Unix(1000, 0)
	const failover = 10 * time.Second
	l := func(shard, owner string, counter int64, parents ...string) lease {
		return lease{Key: "g#s#" + shard, ShardID: shard, Owner: owner, Counter: counter, Parents: parents}
	}
	ended := func(x lease) lease { x.Checkpoint = checkpointShardEnd; return x }
	type want struct{ take, steal string }
	for _, tc := range []struct {
		name   string
		leases []lease
		held   []string
		// seenAt gives observations made earlier (key -> age), with the same counter and owner.
		seenAgo map[string]time.Duration
		want    want
	}{
		{name: "alone takes every free lease", leases: []lease{l("a", "", 0), l("b", "", 0), l("c", "", 0)},
			want: want{take: "a,b,c"}},
		{name: "fair share with a live peer", leases: []lease{l("a", "", 0), l("b", "", 0), l("c", "x", 5), l("d", "x", 5)},
			seenAgo: map[string]time.Duration{"g#s#c": time.Second, "g#s#d": time.Second}, want: want{take: "a,b"}},
		{name: "counter unchanged past failover is expired", leases: []lease{l("a", "dead", 7), l("b", "dead", 7)},
			seenAgo: map[string]time.Duration{"g#s#a": 11 * time.Second, "g#s#b": 11 * time.Second}, want: want{take: "a,b"}},
		{name: "first sight is never expired", leases: []lease{l("a", "x", 7), l("b", "x", 7)},
			want: want{steal: "a"}},
		{name: "steal one from the most loaded", leases: []lease{l("a", "x", 1), l("b", "x", 1), l("c", "x", 1), l("d", "y", 1)},
			seenAgo: map[string]time.Duration{"g#s#a": time.Second, "g#s#b": time.Second, "g#s#c": time.Second, "g#s#d": time.Second},
			want:    want{steal: "a"}},
		{name: "no steal when balanced within one", leases: []lease{l("a", "x", 1), l("b", "x", 1), l("c", "me", 1)},
			held: []string{"c"}, seenAgo: map[string]time.Duration{"g#s#a": time.Second, "g#s#b": time.Second}},
		{name: "child waits for its parents", leases: []lease{l("p", "", 0), ended(l("q", "", 0)), l("c", "", 0, "p", "q")},
			want: want{take: "p"}},
		{name: "child ready once parents ended", leases: []lease{ended(l("p", "", 0)), l("c", "", 0, "p", "gone")},
			want: want{take: "c"}},
		{name: "my own lease without a reader is retaken", leases: []lease{l("a", "me", 3)}, want: want{take: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := map[string]observation{}
			for _, x := range tc.leases {
				if age, ok := tc.seenAgo[x.Key]; ok {
					obs[x.Key] = observation{counter: x.Counter, owner: x.Owner, since: now.Add(-age)}
				}
			}
			held := map[string]bool{}
			for _, h := range tc.held {
				held[h] = true
			}
			plan := planLeases(tc.leases, obs, "me", held, now, failover)
			var took []string
			for _, x := range plan.take {
				took = append(took, x.ShardID)
			}
			sort.Strings(took)
			got := want{take: join(took)}
			if plan.steal != nil {
				got.steal = plan.steal.ShardID
			}
			if got != tc.want {
				t.Errorf("plan = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	base := SubscriberConfig{Kinesis: &shardEndKinesis{}, DynamoDB: fakeLeaseClient{}, ConsumerGroup: "g"}
	for _, tc := range []struct {
		field string
		mut   func(*SubscriberConfig)
	}{
		{"Kinesis", func(c *SubscriberConfig) { c.Kinesis = nil }},
		{"DynamoDB", func(c *SubscriberConfig) { c.DynamoDB = nil }},
		{"ConsumerGroup", func(c *SubscriberConfig) { c.ConsumerGroup = "" }},
		{"StartPosition", func(c *SubscriberConfig) { c.StartPosition = "AT_TIMESTAMP" }},
		{"RenewInterval", func(c *SubscriberConfig) { c.FailoverTime, c.RenewInterval = time.Second, 2*time.Second }},
		{"MaxInFlight", func(c *SubscriberConfig) { c.MaxInFlight = -1 }},
		{"GetRecordsLimit", func(c *SubscriberConfig) { c.GetRecordsLimit = 10001 }},
		{"DrainTimeout", func(c *SubscriberConfig) { c.DrainTimeout = -time.Second }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := base
			tc.mut(&c)
			_, err := NewSubscriber(c)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("err = %v, want ConfigError on %s", err, tc.field)
			}
		})
	}
	if _, err := NewSubscriber(base); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	var ce *ConfigError
	if _, err := NewPublisher(PublisherConfig{}); !errors.As(err, &ce) || ce.Field != "Client" {
		t.Fatalf("publisher without client: %v", err)
	}
	if _, err := NewPublisher(PublisherConfig{Client: &flakyKinesis{}, MaxAttempts: -1}); !errors.As(err, &ce) || ce.Field != "MaxAttempts" {
		t.Fatalf("publisher MaxAttempts: %v", err)
	}
}

// fakeLeaseClient only satisfies the interface for configuration tests; it is never called.
type fakeLeaseClient struct{ LeaseClient }
