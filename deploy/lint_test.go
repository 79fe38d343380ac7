package deploy

import (
	"context"
	"errors"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cfn-lint is installed on the build machines; a missing cfn-lint fails the test rather than skipping
// it. The broken fixture shows the test can fail. One cfn-lint process lints both files: its start-up
// is most of its cost.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint not found on PATH (pip install cfn-lint): %v", err)
	}
	const (
		template = "cloudformation/thingpipe.yaml"
		broken   = "testdata/lint-broken.yaml"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--format", "parseable", "--", template, broken).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running cfn-lint: %v\n%s", err, out)
	}
	// parseable format: path:line:col:endline:endcol:rule:message
	rules := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, ":", 7)
		if len(parts) < 7 {
			if line != "" {
				t.Errorf("unexpected cfn-lint output line: %q", line)
			}
			continue
		}
		rules[parts[0]] = append(rules[parts[0]], parts[5])
		if parts[0] == template {
			t.Errorf("cfn-lint: %s", line)
		}
	}
	got := rules[broken]
	sort.Strings(got)
	if diff := cmp.Diff([]string{"E3002", "E6101"}, got); diff != "" {
		t.Errorf("cfn-lint findings on %s (-want +got):\n%s\noutput:\n%s", broken, diff, out)
	}
	if err == nil {
		t.Errorf("cfn-lint exited 0 although %s is broken", broken)
	}
}
