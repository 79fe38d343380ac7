package pipeline

import (
	"testing"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

func mainWithMoto(m *testing.M) int { return awstest.Main(m) }
