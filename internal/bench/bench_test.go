package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunDispatch(t *testing.T) {
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if err := Run(ctx, nil, &out, &errOut); err == nil {
		t.Error("no scenario: want an error")
	}
	if err := Run(ctx, []string{"nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("unknown scenario: got %v", err)
	}
	out.Reset()
	if err := Run(ctx, []string{"help"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "bench ws") && !strings.Contains(out.String(), "ws ") {
		t.Errorf("help: err %v, output %q", err, out.String())
	}
	for _, sc := range []string{"ws", "poll", "send", "flv"} {
		errOut.Reset()
		if err := Run(ctx, []string{sc, "-h"}, &out, &errOut); err != nil || !strings.Contains(errOut.String(), "-duration") {
			t.Errorf("%s -h: err %v, usage %q", sc, err, errOut.String())
		}
		if err := Run(ctx, []string{sc, "--no-such-flag"}, &out, &errOut); err == nil {
			t.Errorf("%s with a bad flag: want an error", sc)
		}
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.1.2.3:8080", "http://192.0.2.1", "http://[2001:db8::1]:80", "https://127.0.0.1"} {
		for _, sc := range []string{"ws", "poll", "send", "flv"} {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), []string{sc, "--url", u, "--progress=false"}, &out, &errOut)
			if err == nil {
				t.Errorf("%s --url %s: want an error", sc, u)
			}
		}
	}
	for _, h := range []string{"127.0.0.1", "127.9.9.9", "::1", "localhost", "x.localhost"} {
		if err := checkLoopback(context.Background(), h); err != nil {
			t.Errorf("checkLoopback(%q) = %v", h, err)
		}
	}
}

func TestTooManyConns(t *testing.T) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"ws", "--conns", "100000000", "--url", "http://127.0.0.1:1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "open files") {
		t.Fatalf("want an open-file limit error, got %v", err)
	}
	if errors.Is(err, ErrChecksFailed) {
		t.Fatal("a limit error is not a failed check")
	}
}

func TestFlagValidation(t *testing.T) {
	bad := [][]string{
		{"ws", "--conns", "0"},
		{"ws", "--send-via", "carrier-pigeon"},
		{"ws", "--idle", "--send-rate", "5"},
		{"ws", "--send-via", "ws", "--senders", "5", "--conns", "2", "--send-rate", "1"},
		{"poll", "--interval", "soon"},
		{"poll", "--pollers", "0"},
		{"send", "--via", "smoke"},
		{"send", "--kind", "shout"},
		{"flv", "--stall-ratio", "2"},
		{"ws", "extra-arg"},
	}
	for _, args := range bad {
		var out, errOut bytes.Buffer
		if err := Run(context.Background(), append(args, "--url", "http://127.0.0.1:1"), &out, &errOut); err == nil {
			t.Errorf("%v: want an error", args)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func osPid() int { return os.Getpid() }
