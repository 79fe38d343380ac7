package pipeline

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/deploy"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const examplePath = "../deploy/thingpipe.example.yaml"

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if got := Default().withDefaults(); !cmp.Equal(got, Default()) {
		t.Errorf("withDefaults changes Default():\n%s", cmp.Diff(Default(), got))
	}
}

// The example file documents every key with its default: it must load to exactly Default().
func TestExampleFileEqualsDefaults(t *testing.T) {
	cfg, err := Load(examplePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), cfg); diff != "" {
		t.Errorf("example file differs from Default() (-default +example):\n%s", diff)
	}
}

// ...and must show every key, so an operator can find it there.
func TestExampleFileShowsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yamlToRaw(data)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(m any, key string) (any, bool) {
		for part := range strings.SplitSeq(key, ".") {
			mm, ok := m.(map[string]any)
			if !ok {
				return nil, false
			}
			if m, ok = mm[part]; !ok {
				return nil, false
			}
		}
		return m, true
	}
	for _, key := range leafKeys(reflect.TypeFor[Config](), "") {
		if _, ok := lookup(raw, key); !ok {
			t.Errorf("example file does not show key %s", key)
		}
	}
	policies, _ := lookup(raw, "alerting.policies")
	list, _ := policies.([]any)
	if len(list) == 0 {
		t.Fatal("example file has no alerting.policies")
	}
	for i, p := range list {
		for _, key := range leafKeys(reflect.TypeFor[AlertPolicy](), "") {
			if _, ok := lookup(p, key); !ok {
				t.Errorf("example alerting.policies[%d] does not show key %s", i, key)
			}
		}
	}
}

func TestLoadOverrides(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name  string
		yaml  string
		env   []string
		check func(c Config) any // returns the value to compare with want
		want  any
	}{
		{"no file, no env", "", nil, func(c Config) any { return c.HTTPAddr }, ":9090"},
		{"file sets http_addr", "http_addr: 127.0.0.1:9100", nil, func(c Config) any { return c.HTTPAddr }, "127.0.0.1:9100"},
		{"env beats file", "http_addr: :1", []string{"THINGPIPE_HTTP_ADDR=:9200"}, func(c Config) any { return c.HTTPAddr }, ":9200"},
		{"stages from env, comma list", "", []string{"THINGPIPE_STAGES= alerting , archival"},
			func(c Config) any { return c.Stages }, []string{"alerting", "archival"}},
		{"stages from env, YAML list", "", []string{"THINGPIPE_STAGES=[binding]"},
			func(c Config) any { return c.Stages }, []string{"binding"}},
		{"nested env key", "", []string{"THINGPIPE_LOG__LEVEL=debug"}, func(c Config) any { return c.Log.Level }, "debug"},
		{"embedded stage key via env", "", []string{"THINGPIPE_BINDING__RETRY__MAX_RETRIES=2"},
			func(c Config) any { return c.Binding.Retry.MaxRetries }, 2},
		{"duration via env", "", []string{"THINGPIPE_SHUTDOWN_TIMEOUT=1m30s"},
			func(c Config) any { return c.ShutdownTimeout.D() }, 90 * time.Second},
		{"float via env", "", []string{"THINGPIPE_TRACING__SAMPLE_RATIO=0.25"},
			func(c Config) any { return c.Tracing.SampleRatio }, 0.25},
		{"file keeps unmentioned keys", "sqs:\n  receivers: 5\n", nil,
			func(c Config) any { return [2]any{c.SQS.Receivers, c.SQS.WaitTime.D()} }, [2]any{5, 20 * time.Second}},
		{"explicit zero is kept", "provisioning:\n  max_receives: 0\n", nil,
			func(c Config) any { return c.Provisioning.MaxReceives }, 0},
		{"policies replace the defaults, partial policy gets defaults", "alerting:\n  policies:\n    - {name: hot, metric: env.t, op: above, threshold: 30}\n", nil,
			func(c Config) any { return c.Alerting.Policies },
			[]AlertPolicy{{Name: "hot", Metric: "env.t", Op: "above", Threshold: f(30), Consecutive: 1, ClearThreshold: f(30), Severity: "warning"}}},
		{"empty policy list means none", "alerting:\n  policies: []\n", nil,
			func(c Config) any { return len(c.Alerting.Policies) }, 0},
		{"policies from env (JSON)", "", []string{`THINGPIPE_ALERTING__POLICIES=[{"name":"cold","metric":"t","op":"below","threshold":-5,"severity":"info"}]`},
			func(c Config) any { return c.Alerting.Policies },
			[]AlertPolicy{{Name: "cold", Metric: "t", Op: "below", Threshold: f(-5), Consecutive: 1, ClearThreshold: f(-5), Severity: "info"}}},
		{"THINGPIPE_CONFIG is not a key", "", []string{"THINGPIPE_CONFIG=/etc/thingpipe.yaml", "OTHER=1"},
			func(c Config) any { return c.Log.Level }, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := Load(path, tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, tt.check(cfg)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Bad configurations give errors that name the key; the exact messages are golden files.
func TestLoadErrorsGolden(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
	}{
		{"policy-threshold-missing", `
alerting:
  policies:
    - {name: a, metric: temperature, op: above, threshold: 1}
    - {name: b, metric: temperature, op: above}
`, nil},
		{"policy-bad-fields", `
alerting:
  policies:
    - {name: a, metric: "env..t", op: over, threshold: 10, clear_threshold: 20, consecutive: -1, severity: loud, cooldown: -1s}
    - {name: a, metric: x, op: below, threshold: 10, clear_threshold: 5}
`, nil},
		{"unknown-keys", `
http_adr: ":1"
log:
  colour: red
alerting:
  policies:
    - {name: a, metric: t, op: above, threshold: 1, thresold: 2}
`, nil},
		{"wrong-types", `
shutdown_timeout: 30
sqs:
  receivers: ten
  wait_time: soon
tracing:
  sample_ratio: "half"
stages: alerting
kinesis: []
`, nil},
		{"out-of-range", `
stages: [alerting, alerting, billing]
http_addr: "9090"
shutdown_timeout: 0s
log: {level: verbose, format: xml}
sqs: {wait_time: 1500ms, visibility_timeout: 0s, receivers: 0, nack_backoff_initial: 2s, nack_backoff_max: 1s}
kinesis: {alerting_group: g, archival_group: g, start_position: EARLIEST, max_records: 0}
binding:
  concurrency: 0
  on_retries_exhausted: drop
  retry: {max_retries: -1, initial_interval: 1s, max_interval: 10ms, multiplier: 0.5}
archival: {max_records: 600, max_bytes: 10, max_age: 0s, concurrency: 100}
resources: {archive_bucket: ""}
`, nil},
		{"env-errors", "", []string{
			"THINGPIPE_SQS__RECEIVERS=ten",
			"THINGPIPE_SHUTDOWN_TIMEOUT=forever",
			"THINGPIPE_HTTP_ADRR=:1",
			"THINGPIPE_LOG_LEVEL=debug",
			"THINGPIPE_ALERTING__POLICIES=[{",
		}},
		{"empty-stages", "stages: []\n", nil},
		{"response-timeout-within-long-poll", "aws: {response_timeout: 20s}\nsqs: {wait_time: 20s}\n", nil},
		{"binding-receives-before-deadline", "binding:\n  max_receives: 4\n  activation_deadline: 10m\n", nil},
		{"yaml-syntax", "log:\n  level: [info\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, tt.env)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			got := strings.ReplaceAll(err.Error(), path, "CONFIG") + "\n"
			golden := filepath.Join("testdata", "config", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("error message differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestFieldErrorsAreTyped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("alerting:\n  policies:\n    - {name: a, metric: t, op: above}\n"), 0o600)
	_, err := Load(path, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != "alerting.policies[0].threshold" || fe.Msg != "must be set" {
		t.Fatalf("want *FieldError for alerting.policies[0].threshold, got %#v (%v)", fe, err)
	}
	if got, want := err.Error(), "config: alerting.policies[0].threshold: must be set"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestEnvNames(t *testing.T) {
	names := map[string]bool{}
	for _, key := range leafKeys(reflect.TypeFor[Config](), "") {
		n := EnvName(key)
		if names[n] {
			t.Errorf("two keys map to %s", n)
		}
		names[n] = true
	}
	for _, want := range []string{"THINGPIPE_HTTP_ADDR", "THINGPIPE_STAGES", "THINGPIPE_LOG__LEVEL",
		"THINGPIPE_ALERTING__POLICIES", "THINGPIPE_ARCHIVAL__MAX_BYTES", "THINGPIPE_PROVISIONING__RETRY__MAX_ELAPSED"} {
		if !names[want] {
			t.Errorf("missing environment variable %s", want)
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range names {
			if !yield(k) {
				return
			}
		}
	})
	if len(keys) < 50 {
		t.Errorf("only %d keys: %v", len(keys), keys)
	}
}

// Whatever the file says, parsing returns a config or an error; it never panics, and a config it
// accepts validates.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("stages: [alerting]\nalerting:\n  policies:\n    - {name: a, metric: t, op: above, threshold: 1}\n"))
	f.Add([]byte("kinesis: 3\n"))
	f.Add([]byte("alerting: {policies: [1, null, {threshold: null}]}\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseYAML(Default(), data, "fuzz.yaml")
		if err != nil {
			return
		}
		cfg = cfg.withDefaults()
		_ = cfg.Validate()
	})
}

// The defaults name exactly the resources deploy/cloudformation creates.
func TestDefaultsMatchDeployNames(t *testing.T) {
	d := Default()
	got := map[string]string{
		"provisioning_queue": d.Resources.ProvisioningQueue, "binding_queue": d.Resources.BindingQueue,
		"telemetry_stream": d.Resources.TelemetryStream, "lease_table": d.Resources.LeaseTable,
		"devices_table": d.Resources.DevicesTable, "bindings_table": d.Resources.BindingsTable,
		"bindings_user_index": d.Resources.BindingsUserIndex, "alerts_table": d.Resources.AlertsTable,
		"events_topic": d.Resources.EventsTopic, "alerts_topic": d.Resources.AlertsTopic,
		"archive_bucket":   d.Resources.ArchiveBucket,
		"provisioning dlq": d.Provisioning.DeadLetterQueue, "binding dlq": d.Binding.DeadLetterQueue,
		"alerting dlq": d.Alerting.DeadLetterQueue, "archival dlq": d.Archival.DeadLetterQueue,
	}
	want := map[string]string{
		"provisioning_queue": deploy.ProvisioningQueue, "binding_queue": deploy.BindingQueue,
		"telemetry_stream": deploy.TelemetryStream, "lease_table": deploy.LeasesTable,
		"devices_table": deploy.DevicesTable, "bindings_table": deploy.BindingsTable,
		"bindings_user_index": deploy.BindingsByUserIndex, "alerts_table": deploy.AlertsTable,
		"events_topic": deploy.EventsTopic, "alerts_topic": deploy.AlertsTopic,
		"archive_bucket":   deploy.DefaultArchiveBucket,
		"provisioning dlq": deploy.ProvisioningDLQ, "binding dlq": deploy.BindingDLQ,
		"alerting dlq": deploy.AlertingDLQ, "archival dlq": deploy.ArchivalDLQ,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults differ from deploy's resource names (-deploy +default):\n%s", diff)
	}
}

func TestRedeliverySpan(t *testing.T) {
	for _, tt := range []struct {
		n            int
		initial, max time.Duration
		want         time.Duration
	}{
		{1, time.Second, time.Minute, time.Second},
		{4, time.Second, time.Minute, 15 * time.Second},
		{20, time.Second, time.Minute, (1 + 2 + 4 + 8 + 16 + 32 + 14*60) * time.Second},
		{3, 10 * time.Second, 15 * time.Second, 40 * time.Second},
	} {
		if got := redeliverySpan(tt.n, tt.initial, tt.max); got != tt.want {
			t.Errorf("redeliverySpan(%d, %s, %s) = %s, want %s", tt.n, tt.initial, tt.max, got, tt.want)
		}
	}
}

// Any value in any THINGPIPE_ variable gives a config or an error naming the key; never a panic.
func FuzzEnvOverride(f *testing.F) {
	keys := leafKeys(reflect.TypeFor[Config](), "")
	f.Add(0, "alerting,archival")
	f.Add(3, "1m")
	f.Add(len(keys)-1, "[{")
	f.Add(7, `[{"name":"x","threshold":"1"}]`)
	f.Fuzz(func(t *testing.T, i int, value string) {
		key := keys[uint(i)%uint(len(keys))]
		cfg, err := applyEnv(Default(), []string{EnvName(key) + "=" + value})
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Key, key) {
				t.Fatalf("error %v does not name key %s", err, key)
			}
			return
		}
		_ = cfg.withDefaults().Validate()
	})
}
