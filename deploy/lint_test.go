package deploy

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cfn-lint is installed on the build machines; a missing cfn-lint fails the test rather than skipping
// it. The broken fixture shows the test can fail.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint not found on PATH (pip install cfn-lint): %v", err)
	}
	tests := []struct {
		file      string
		wantRules []string // empty: must pass
	}{
		{"cloudformation/thingpipe.yaml", nil},
		{"testdata/lint-broken.yaml", []string{"E3002", "E6101"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, tt.file).CombinedOutput()
			if len(tt.wantRules) == 0 {
				if err != nil {
					t.Fatalf("cfn-lint %s: %v\n%s", tt.file, err, out)
				}
				return
			}
			var ee *exec.ExitError
			if err == nil || !errAs(err, &ee) {
				t.Fatalf("cfn-lint %s passed (err %v), want failures %v\n%s", tt.file, err, tt.wantRules, out)
			}
			for _, r := range tt.wantRules {
				if !strings.Contains(string(out), r) {
					t.Errorf("cfn-lint %s did not report %s:\n%s", tt.file, r, out)
				}
			}
		})
	}
}
