package main

import (
	"os"
	"testing"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

// TestMain starts moto for the commands that talk to AWS (rules plan/apply).
func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }
