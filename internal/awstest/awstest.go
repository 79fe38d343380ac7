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
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// AccountID is the account moto answers for.
const AccountID = "123456789012"

// Region is the region tests run in.
const Region = "us-east-1"

// Main starts moto_server on a free loopback port, points the AWS SDK at it through the environment
// (AWS_ENDPOINT_URL, fake credentials, region), runs the tests and stops the server. It returns the exit
// code for os.Exit. A missing moto_server is a failure, never a skip: a test run that silently skips its
// AWS tests proves nothing.
func Main(m *testing.M) int {
	srv, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "awstest: %v\n", err)
		return 1
	}
	code := m.Run()
	srv.Stop()
	return code
}

// Server is a running moto_server.
type Server struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start launches moto_server on loopback and configures this process's environment to use it.
func Start() (*Server, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not found on PATH (install it with: pip install \"moto[server]\"): %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		srv, err := startOnce(bin)
		if err == nil {
			srv.exportEnv()
			return srv, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startOnce(bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	// moto is a Python process started through a shim; its own process group lets Stop end all of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs strings.Builder
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	srv := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(srv.done) }()
	if err := srv.waitReady(30 * time.Second); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("moto_server on port %d: %w", port, err)
	}
	return srv, nil
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("exited before it was ready")
		default:
		}
		resp, err := client.Get(s.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s", limit)
}

func (s *Server) exportEnv() {
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":            s.Endpoint,
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  Region,
		"AWS_DEFAULT_REGION":          Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		if v == "" {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, v)
		}
	}
}

// Stop ends moto_server and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Reset wipes every resource moto holds, for tests that need a clean account.
func (s *Server) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("resetting moto: %w", err)
	}
	resp.Body.Close()
	return nil
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
