package rules

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestLintGolden(t *testing.T) {
	problems, err := Lint("testdata/lint")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range problems {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	golden(t, "lint.golden", b.String())
}

func TestLintDefaultRulesClean(t *testing.T) {
	problems, err := Lint("../deploy/rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("default rule set: %s", p)
	}
}

// Every action type of the SDK must be known to lint, so a new one is not silently unchecked.
func TestRequiredFieldsCoverEveryActionType(t *testing.T) {
	for name := range wireFields(reflect.TypeOf(types.Action{})) {
		if _, ok := requiredFields[name]; !ok {
			t.Errorf("action type %s has no entry in requiredFields", name)
		}
	}
}
