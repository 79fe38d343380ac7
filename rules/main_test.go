package rules

import (
	"os"
	"testing"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }
