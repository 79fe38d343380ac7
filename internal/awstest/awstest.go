// Package awstest runs moto's server for a test binary and gives tests AWS SDK configuration pointed
// at it. Every AWS integration test in thingpipe goes through it, so the SDK code under test is the
// same code that talks to AWS in production; only the endpoint differs.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }
//
// and in tests:
//
//	cfg := awstest.Config(t)
//	client := sqs.NewFromConfig(cfg)
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/thingpipe/thingpipe/internal/moto"
)

// AccountID is the account moto answers for.
const AccountID = moto.AccountID

// Region is the region tests run in.
const Region = moto.Region

// Main starts moto_server on a free loopback port, points the AWS SDK at it through the environment
// (AWS_ENDPOINT_URL, fake credentials, region), runs the tests and stops the server. It returns the exit
// code for os.Exit. A missing moto_server is a failure, never a skip: a test run that silently skips its
// AWS tests proves nothing.
func Main(m *testing.M) int {
	srv, err := moto.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "awstest: %v\n", err)
		return 1
	}
	srv.ExportEnv()
	code := m.Run()
	srv.Stop()
	return code
}

// Endpoint returns the endpoint Main started, failing the test when there is none.
func Endpoint(t testing.TB) string {
	t.Helper()
	ep := os.Getenv("AWS_ENDPOINT_URL")
	if ep == "" {
		t.Fatal("awstest: AWS_ENDPOINT_URL is not set; call awstest.Main from TestMain")
	}
	return ep
}

// Config loads the SDK's default configuration, which Main has pointed at moto.
func Config(t testing.TB) aws.Config {
	t.Helper()
	Endpoint(t)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("awstest: loading AWS config: %v", err)
	}
	return cfg
}

// Name returns a resource name unique to this call, so tests sharing one moto never collide.
// It is made of letters, digits and dashes, which every AWS resource type accepts.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
