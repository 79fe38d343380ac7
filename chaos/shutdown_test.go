package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestShutdownUnderLoad (issue 6): all four stages in one `thingpipe run`, SIGTERM while telemetry
// and control messages keep arriving. The process must exit 0 within the shutdown timeout having
// finished everything it started: every record it archived is covered by its final checkpoints and
// every record below them is archived, every SQS message it acked is deleted and the others are
// visible again at once. A second process then handles exactly what the first left: no archived or
// alerted record and no acked SQS message is handled again. Finally every outcome is exact.
func TestShutdownUnderLoad(t *testing.T) {
	begin := time.Now()
	e := setup(t)
	const devices = 10
	s := newScenario(t, e, devices)
	q := s.ownQueues(t)
	s.envv = append(s.envv,
		"THINGPIPE_LOG__LEVEL=debug", // one "message handled" line per acked message: who handled what
		// Long enough that a message left held by the first process would still be invisible when
		// the test looks; nacks come back within 2 s.
		"THINGPIPE_SQS__VISIBILITY_TIMEOUT=30s",
		"THINGPIPE_SQS__NACK_BACKOFF_MAX=2s",
		"THINGPIPE_BINDING__ACTIVATION_DEADLINE=30s",
	)
	ctx := t.Context()

	p1 := s.start(t)
	s.waitLeased(t)
	loadStart := time.Now()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loaded := make(chan map[string]sent, 1)
	go func() { loaded <- s.load(loadCtx, t, 48, 250*time.Millisecond) }() // 12 s of telemetry

	// Control messages keep arriving: one device every 500 ms, the SIGTERM among them.
	ctl := &controlSender{s: s, q: q}
	for i := range 8 {
		ctl.send(t, i)
		time.Sleep(500 * time.Millisecond)
	}
	sigAt := time.Now()
	if err := p1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctl.send(t, 8) // while it drains
	took := p1.wait(t, 15*time.Second)
	t.Logf("process 1: SIGTERM %.1fs into the load, exited %s later with status %d", sigAt.Sub(loadStart).Seconds(), took.Round(time.Millisecond), p1.cmd.ProcessState.ExitCode())
	if code := p1.cmd.ProcessState.ExitCode(); code != 0 || took > 10*time.Second {
		t.Fatalf("process 1 exited with status %d %s after SIGTERM, want 0 within the 10s shutdown timeout:\n%s", code, took, p1.tail())
	}
	log1 := readLog(t, p1)
	if n := strings.Count(log1, `msg="stage stopped"`); n != 4 || strings.Contains(log1, "clean=false") || !strings.Contains(log1, `msg="pipeline stopped"`) {
		t.Errorf("process 1 did not log a clean drain of its 4 stages (%d \"stage stopped\" lines):\n%s", n, p1.tail())
	}

	// Right after the exit: checkpoints, archive and queues as the first process left them.
	arch1, alert1 := s.leaseState(t, s.name+"-archival"), s.leaseState(t, s.name+"-alerting")
	stream := s.streamRecords(t)
	count1, _, objects1 := s.archived(t)
	for group, ls := range map[string]map[string]leaseItem{"archival": arch1, "alerting": alert1} {
		for shard, l := range ls {
			if l.owner != "" {
				t.Errorf("%s lease of %s still owned by %s after a clean exit: its next owner waits out failover_time", group, shard, l.owner)
			}
		}
		if len(ls) != len(stream) {
			t.Errorf("%s: leases for %d shards, the stream has %d", group, len(ls), len(stream))
		}
	}
	upTo := func(ckpt map[string]leaseItem) int { return upToIn(stream, ckpt) }
	for shard, seqs := range stream {
		c := arch1[shard].checkpoint
		var notArchived, notCheckpointed []string
		for _, seq := range seqs {
			if cmpSeq(seq, c) <= 0 && count1[shard+"/"+seq] == 0 {
				notArchived = append(notArchived, seq)
			}
		}
		for id, n := range count1 {
			if sh, seq, _ := strings.Cut(id, "/"); sh == shard && cmpSeq(seq, c) > 0 {
				notCheckpointed = append(notCheckpointed, seq)
			}
			if n > 1 {
				t.Errorf("%s archived %d times by one process", id, n)
			}
		}
		if len(notArchived) > 0 {
			t.Errorf("shard %s: %d records at or below the archival checkpoint %s are not in S3 (lost): %v", shard, len(notArchived), c, head(notArchived))
		}
		if len(notCheckpointed) > 0 {
			t.Errorf("shard %s: %d records in S3 beyond the archival checkpoint %s (would be replayed): %v", shard, len(notCheckpointed), c, head(notCheckpointed))
		}
	}
	acked1 := handledIDs(log1, "acked")
	archived1 := len(count1)
	if n := len(acked1["archival"]); n != archived1 || n != upTo(arch1) {
		t.Errorf("archival in process 1 acked %d records; %d are in S3 and %d are at or below its checkpoints (want all three equal)", n, archived1, upTo(arch1))
	}
	if n := len(acked1["alerting"]); n != upTo(alert1) {
		t.Errorf("alerting in process 1 acked %d records, %d are at or below its checkpoints", n, upTo(alert1))
	}
	for _, d := range s.devices {
		st := s.alertState(t, d+"#overheating")
		if st.lastSeq != "" && cmpSeq(st.lastSeq, alert1[st.lastShard].checkpoint) > 0 {
			t.Errorf("%s: alert state applied reading %s/%s, beyond the alerting checkpoint %s", d, st.lastShard, st.lastSeq, alert1[st.lastShard].checkpoint)
		}
	}
	t.Logf("process 1 left: %d of %d stream records archived in %d objects and checkpointed, %d alerted and checkpointed", archived1, countAll(stream), objects1, upTo(alert1))

	// SQS: acked messages deleted, every other one visible again within the nack backoff, far
	// inside the 30 s visibility timeout.
	sent1 := ctl.sent()
	for _, qq := range []struct{ stage, url string }{{"provisioning", q.provisioning}, {"binding", q.binding}} {
		want := 0
		for id, stage := range sent1 {
			if stage == qq.stage && !acked1[qq.stage][id] {
				want++
			}
		}
		var last string
		ok := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			vis, invis := s.queueDepth(t, qq.url)
			last = fmt.Sprintf("%d visible, %d in flight", vis, invis)
			if vis == want && invis == 0 {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("%s queue after process 1: %s; want %d visible (sent %d, acked %d) and none in flight", qq.stage, last, want, countStage(sent1, qq.stage), len(acked1[qq.stage]))
		} else {
			t.Logf("%s queue after process 1: %d acked and deleted, %d visible again", qq.stage, len(acked1[qq.stage]), want)
		}
	}

	// Restart; the rest of the control messages arrive while it catches up.
	p2 := s.start(t)
	for i := 9; i < devices; i++ {
		ctl.send(t, i)
		time.Sleep(300 * time.Millisecond)
	}
	recs := <-loaded
	firing, resolved := map[string]int{}, map[string]int{}
	waitFor(t, 2*time.Minute, "process 2 drained", func() (bool, string) {
		if p2.exited() {
			t.Fatalf("process 2 exited: %s", p2.tail())
		}
		return s.settled(t, recs, firing, resolved)
	})
	stream = s.streamRecords(t) // the load has ended: the whole stream
	beyond := func(ckpt map[string]leaseItem) int { return countAll(stream) - upToIn(stream, ckpt) }
	addr := httpAddr(t, p2)
	waitFor(t, 30*time.Second, "process 2 handled the records beyond process 1's checkpoints", func() (bool, string) {
		m := scrape(t, addr)
		return m[`thingpipe_messages_acked_total{stage="archival"}`] >= float64(beyond(arch1)) &&
				m[`thingpipe_messages_acked_total{stage="alerting"}`] >= float64(beyond(alert1)),
			fmt.Sprintf("archival acked %v of %d, alerting %v of %d", m[`thingpipe_messages_acked_total{stage="archival"}`], beyond(arch1), m[`thingpipe_messages_acked_total{stage="alerting"}`], beyond(alert1))
	})
	time.Sleep(3 * time.Second) // let late redeliveries and emails show
	s.drainInbox(t, firing, resolved)
	m := scrape(t, addr)
	for _, g := range []struct {
		stage string
		want  int
	}{{"archival", beyond(arch1)}, {"alerting", beyond(alert1)}} {
		rcv, ack := m[`thingpipe_messages_received_total{stage="`+g.stage+`"}`], m[`thingpipe_messages_acked_total{stage="`+g.stage+`"}`]
		if int(rcv) != g.want || int(ack) != g.want {
			t.Errorf("%s in process 2: %v records received and %v acked; want exactly the %d beyond process 1's checkpoints (nothing of process 1's seen again)", g.stage, rcv, ack, g.want)
		} else {
			t.Logf("%s in process 2: handled exactly the %d records beyond process 1's checkpoints", g.stage, g.want)
		}
	}
	p2.stop(syscall.SIGTERM)
	if code := p2.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("process 2 exited with status %d after SIGTERM:\n%s", code, p2.tail())
	}
	log2 := readLog(t, p2)
	if n := s.retries(t); n > 0 {
		t.Errorf("%d archive batches found records already in S3: process 1 archived records its checkpoints did not cover", n)
	}

	// SQS: nothing process 1 acked was handled again; every message acked exactly once overall.
	seen2, acked2 := handledIDs(log2, ""), handledIDs(log2, "acked")
	for id, stage := range ctl.sent() {
		switch {
		case acked1[stage][id] && seen2[stage][id]:
			t.Errorf("%s message %s acked by process 1 was handled again by process 2", stage, id)
		case !acked1[stage][id] && !acked2[stage][id]:
			t.Errorf("%s message %s was never acked", stage, id)
		}
	}
	for _, stage := range []string{"provisioning", "binding"} {
		t.Logf("%s: %d messages acked by process 1, %d by process 2", stage, len(acked1[stage]), len(acked2[stage]))
	}

	// Final outcomes.
	count, _, objects := s.archived(t)
	missing, dups := 0, 0
	for shard, seqs := range stream {
		for _, seq := range seqs {
			switch count[shard+"/"+seq] {
			case 0:
				missing++
			case 1:
			default:
				dups++
			}
		}
	}
	if missing > 0 || dups > 0 || len(count) != countAll(stream) {
		t.Errorf("archive: %d stream records, %d archived (%d objects): %d missing, %d more than once", countAll(stream), len(count), objects, missing, dups)
	}
	for _, d := range s.devices {
		if firing[d] != 1 || resolved[d] != 1 {
			t.Errorf("%s: %d FIRING and %d RESOLVED emails, want 1 and 1", d, firing[d], resolved[d])
		}
	}
	for name, url := range q.dlqs {
		if vis, invis := s.queueDepth(t, url); vis+invis != 0 {
			t.Errorf("dead-letter queue %s holds %d messages", name, vis+invis)
		}
	}
	t.Logf("%d stream records archived exactly once in %d objects; %d devices ACTIVE and bound, one FIRING and one RESOLVED email each; test took %s",
		countAll(stream), objects, devices, time.Since(begin).Round(time.Second))
}

// TestShutdownSecondSignal: a second SIGTERM during the drain ends the process at once (status 1,
// said on stderr), like a crash: a restart redelivers what was in flight and every outcome is still
// exact. The SQS long poll is 5 s, so the first signal's drain lasts seconds (the subscriber lets a
// poll in progress finish rather than strand the messages it may bring).
func TestShutdownSecondSignal(t *testing.T) {
	e := setup(t)
	const devices = 4
	s := newScenario(t, e, devices)
	q := s.ownQueues(t)
	s.envv = append(s.envv, "THINGPIPE_SQS__WAIT_TIME=5s")
	p1 := s.start(t)
	s.waitLeased(t)
	s.sendControl(t)
	recs := s.load(t.Context(), t, 10, 200*time.Millisecond) // no hot spell: no alert emails
	if err := p1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitForEvery(t, 10*time.Second, 100*time.Millisecond, "process 1 starts shutting down", func() (bool, string) {
		return strings.Contains(readLog(t, p1), `msg="shutting down"`) || p1.exited(), ""
	})
	if strings.Contains(readLog(t, p1), `msg="pipeline stopped"`) || p1.exited() {
		t.Fatalf("the drain finished before the second signal could be sent: the test did not exercise it:\n%s", p1.tail())
	}
	s.kills = append(s.kills, time.Now().UTC()) // the second signal stops it like a kill
	if err := p1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := p1.wait(t, 15*time.Second)
	log1 := readLog(t, p1)
	code := p1.cmd.ProcessState.ExitCode()
	t.Logf("second SIGTERM at %s: exited %s later with status %d", s.kills[0].Format("15:04:05.000"), took.Round(time.Millisecond), code)
	if code != 1 || took > 2*time.Second || !strings.Contains(log1, "second signal") {
		t.Errorf("after a second SIGTERM during the drain: status %d after %s; want status 1 at once, with the reason on stderr:\n%s", code, took, p1.tail())
	}

	p2 := s.start(t)
	waitFor(t, time.Minute, "process 2 drained", func() (bool, string) {
		if p2.exited() {
			t.Fatalf("process 2 exited: %s", p2.tail())
		}
		ok, summary := s.checkArchive(t, recs)
		notDone := 0
		for i, d := range s.devices {
			if str(s.item(t, e.out.DevicesTable, d), "state") != "ACTIVE" || str(s.item(t, e.out.BindingsTable, d), "userId") != fmt.Sprintf("user-%d", i) {
				notDone++
			}
		}
		return ok && notDone == 0, fmt.Sprintf("archive: %s; %d devices not ACTIVE and bound", summary, notDone)
	})
	time.Sleep(2 * time.Second)
	p2.stop(syscall.SIGTERM)
	count, _, _ := s.archived(t)
	for seq := range recs {
		if count[seq] != 1 {
			t.Errorf("%s archived %d times", seq, count[seq])
		}
	}
	for name, url := range q.dlqs {
		if vis, invis := s.queueDepth(t, url); vis+invis != 0 {
			t.Errorf("dead-letter queue %s holds %d messages", name, vis+invis)
		}
	}
}

// queues are a scenario's own SQS queues, so their depths say exactly what its processes did.
type queues struct {
	provisioning, binding string
	dlqs                  map[string]string // by queue name
}

// ownQueues creates the scenario's provisioning and binding queues and the four dead-letter queues,
// and points the processes at them.
func (s *scenario) ownQueues(t *testing.T) queues {
	t.Helper()
	mk := func(name string) string {
		out, err := s.e.sqs.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.QueueUrl)
	}
	q := queues{provisioning: mk(s.name + "-provisioning"), binding: mk(s.name + "-binding"), dlqs: map[string]string{}}
	s.provisioningQueue, s.bindingQueue = q.provisioning, q.binding
	s.envv = append(s.envv,
		"THINGPIPE_RESOURCES__PROVISIONING_QUEUE="+s.name+"-provisioning",
		"THINGPIPE_RESOURCES__BINDING_QUEUE="+s.name+"-binding")
	for _, stage := range []string{"provisioning", "binding", "alerting", "archival"} {
		name := s.name + "-" + stage + "-dlq"
		q.dlqs[name] = mk(name)
		s.envv = append(s.envv, "THINGPIPE_"+strings.ToUpper(stage)+"__DEAD_LETTER_QUEUE="+name)
	}
	return q
}

// controlSender sends devices' control messages to the scenario's queues and remembers their
// MessageIds (the watermill UUID of a raw SQS message) by stage.
type controlSender struct {
	s  *scenario
	q  queues
	mu sync.Mutex
	id map[string]string // MessageId -> stage
}

func (c *controlSender) send(t *testing.T, i int) {
	t.Helper()
	created, connected, bind := controlBodies(i, c.s.devices[i], time.Now().UnixMilli())
	for _, m := range []struct{ stage, url, body string }{
		{"provisioning", c.q.provisioning, created}, {"provisioning", c.q.provisioning, connected}, {"binding", c.q.binding, bind},
	} {
		out, err := c.s.e.sqs.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(m.url), MessageBody: aws.String(m.body)})
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		if c.id == nil {
			c.id = map[string]string{}
		}
		c.id[aws.ToString(out.MessageId)] = m.stage
		c.mu.Unlock()
	}
}

func (c *controlSender) sent() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.id))
	for k, v := range c.id {
		out[k] = v
	}
	return out
}

func countStage(ids map[string]string, stage string) int {
	n := 0
	for _, s := range ids {
		if s == stage {
			n++
		}
	}
	return n
}

// wait waits for the process to exit and returns how long that took.
func (p *proc) wait(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-p.done:
		return time.Since(start)
	case <-time.After(limit):
		t.Fatalf("process still running %s after the signal:\n%s", limit, p.tail())
		return 0
	}
}

func readLog(t *testing.T, p *proc) string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	stageAttr = regexp.MustCompile(` stage=(\S+)`)
	uuidAttr  = regexp.MustCompile(` message_uuid=(\S+)`)
)

// handledIDs reads a process's debug log: the message UUIDs each stage acked (outcome "acked") or
// handled with any outcome (""), by stage.
func handledIDs(log, outcome string) map[string]map[string]bool {
	msgs := map[string]string{"acked": `msg="message handled"`}
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if want, ok := msgs[outcome]; ok && !strings.Contains(line, want) {
			continue
		}
		if outcome == "" && !strings.Contains(line, `msg="message handled"`) && !strings.Contains(line, `msg="message nacked"`) && !strings.Contains(line, `msg="message dead-lettered"`) {
			continue
		}
		st, id := stageAttr.FindStringSubmatch(line), uuidAttr.FindStringSubmatch(line)
		if st == nil || id == nil {
			continue
		}
		if out[st[1]] == nil {
			out[st[1]] = map[string]bool{}
		}
		out[st[1]][id[1]] = true
	}
	return out
}

var httpAddrAttr = regexp.MustCompile(`msg="thingpipe running".* http_addr=(\S+)`)

// httpAddr is the address the process serves /metrics on (it listens on port 0 and logs it).
func httpAddr(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	waitForEvery(t, 30*time.Second, 100*time.Millisecond, "the process logs its HTTP address", func() (bool, string) {
		if m := httpAddrAttr.FindStringSubmatch(readLog(t, p)); m != nil {
			addr = m[1]
		}
		return addr != "", ""
	})
	return addr
}

// scrape reads the process's /metrics: value by "name{labels}".
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// leaseItem is what the test reads of a lease (pipeline/kinesis/leases.go's item).
type leaseItem struct{ owner, checkpoint string }

// leaseState reads group's leases on the telemetry stream, by shard.
func (s *scenario) leaseState(t *testing.T, group string) map[string]leaseItem {
	t.Helper()
	out, err := s.e.ddb.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(s.e.out.LeasesTable), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	ls := map[string]leaseItem{}
	for _, it := range out.Items {
		if strings.HasPrefix(str(it, "leaseKey"), group+"#"+s.e.out.TelemetryStreamName+"#") {
			ls[str(it, "shardId")] = leaseItem{owner: str(it, "owner"), checkpoint: str(it, "checkpoint")}
		}
	}
	return ls
}

// waitLeased waits until the scenario's two consumer groups hold a lease on every shard.
func (s *scenario) waitLeased(t *testing.T) {
	t.Helper()
	waitForEvery(t, time.Minute, 100*time.Millisecond, "every shard leased by both groups", func() (bool, string) {
		for _, g := range []string{"-archival", "-alerting"} {
			ls := s.leaseState(t, s.name+g)
			if len(ls) == 0 {
				return false, g + ": no leases"
			}
			for shard, l := range ls {
				if l.owner == "" {
					return false, g + ": " + shard + " free"
				}
			}
		}
		return true, ""
	})
}

type alertItem struct{ lastShard, lastSeq string }

func (s *scenario) alertState(t *testing.T, key string) alertItem {
	t.Helper()
	out, err := s.e.ddb.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(s.e.out.AlertsTable), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{"alertKey": &ddbtypes.AttributeValueMemberS{Value: key}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return alertItem{lastShard: str(out.Item, "lastShard"), lastSeq: str(out.Item, "lastSeq")}
}

// streamRecords reads every record of the telemetry stream: sequence numbers by shard, in order.
func (s *scenario) streamRecords(t *testing.T) map[string][]string {
	t.Helper()
	ctx := t.Context()
	name := aws.String(s.e.out.TelemetryStreamName)
	shards, err := s.e.kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, sh := range shards.Shards {
		id := aws.ToString(sh.ShardId)
		it, err := s.e.kin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: sh.ShardId, ShardIteratorType: kintypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		out[id] = []string{}
		for iter != nil {
			got, err := s.e.kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got.Records {
				out[id] = append(out[id], aws.ToString(r.SequenceNumber))
			}
			if len(got.Records) == 0 {
				break
			}
			iter = got.NextShardIterator
		}
	}
	return out
}

// queueDepth is SQS's count of visible and in-flight (received, not deleted, still invisible)
// messages of a queue.
func (s *scenario) queueDepth(t *testing.T, url string) (visible, inFlight int) {
	t.Helper()
	out, err := s.e.sqs.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// cmpSeq compares Kinesis sequence numbers (decimal strings without leading zeros); "" is before
// every record.
func cmpSeq(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func upToIn(stream map[string][]string, ckpt map[string]leaseItem) int {
	n := 0
	for shard, seqs := range stream {
		for _, seq := range seqs {
			if cmpSeq(seq, ckpt[shard].checkpoint) <= 0 {
				n++
			}
		}
	}
	return n
}

func countAll(stream map[string][]string) int {
	n := 0
	for _, seqs := range stream {
		n += len(seqs)
	}
	return n
}

func head(xs []string) []string {
	slices.SortFunc(xs, cmpSeq)
	if len(xs) > 5 {
		return xs[:5]
	}
	return xs
}
