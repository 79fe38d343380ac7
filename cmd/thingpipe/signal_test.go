package main

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitOnSecondSignal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signals []os.Signal
		want    int // exit status, -1: no exit
	}{
		{"one signal: graceful shutdown, no exit here", []os.Signal{syscall.SIGTERM}, -1},
		{"second SIGTERM exits 1", []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, 1},
		{"Ctrl-C twice exits 1", []os.Signal{os.Interrupt, os.Interrupt}, 1},
		{"no signal", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal, 2)
			for _, s := range tc.signals {
				sigs <- s
			}
			close(sigs) // stands for the process ending without more signals
			var stderr bytes.Buffer
			got := -1
			done := make(chan struct{})
			go func() {
				defer close(done)
				exitOnSecondSignal(sigs, &stderr, func(code int) { got = code })
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("exitOnSecondSignal did not return")
			}
			if got != tc.want {
				t.Errorf("exit status %d, want %d", got, tc.want)
			}
			if said := strings.Contains(stderr.String(), "second signal"); said != (tc.want == 1) {
				t.Errorf("stderr %q", stderr.String())
			}
		})
	}
}
