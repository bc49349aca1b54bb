// Command sockfloor measures the floor under roomcast's per-message
// figures: the server CPU that the kernel and the Go runtime spend on the
// socket operations a quiz answer, a rain tap or a fan-out write needs, in a
// server that does nothing else (no WebSocket framing, no JSON, no room, no
// locks). A figure of `roomcast bench` can be compared with it: what is
// above the floor is roomcast's own, what is below it no server written in
// Go on this machine can reach.
//
//	sockfloor -pattern tap  -conns 10000 -rate 5     # one request in, one reply out (bench rain)
//	sockfloor -pattern quiz -conns 10000             # a push to every connection, an answer in, a reply out (bench quiz)
//	sockfloor -pattern push -conns 5000 -size 800 -every 200ms  # one write per connection per tick (bench ws)
//
// It starts the server as a child process of itself (so the figure is that
// process's CPU alone, from /proc/PID/stat), connects -conns clients over
// loopback, lets them run for -d and prints the server CPU per operation.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"roomcast/internal/bench"
)

// Sizes of the messages, close to roomcast's JSON frames: a question or a
// fan-out batch is pushed (-size), a tap or an answer (40 bytes) is answered
// by a reply (60 bytes).
const (
	requestSize = 40
	replySize   = 60
	serverEnv   = "SOCKFLOOR_SERVER" // set in the child: run as the server
)

// config is one measurement.
type config struct {
	Pattern string        `json:"pattern"`
	Conns   int           `json:"conns"`
	Rate    float64       `json:"rate_per_conn"` // tap: requests per second per connection
	Size    int           `json:"push_size"`     // quiz, push: bytes pushed to each connection
	Every   time.Duration `json:"-"`             // quiz, push: the push interval
	Window  time.Duration `json:"-"`
}

// result is what a measurement found.
type result struct {
	config
	EveryMS   int64   `json:"every_ms"`
	WindowS   float64 `json:"window_s"`
	Ops       int64   `json:"ops"` // replies (tap, quiz) or pushes (push) received by the clients
	OpsPerS   float64 `json:"ops_per_s"`
	ServerCPU float64 `json:"server_cpu_s"`
	USPerOp   float64 `json:"us_cpu_per_op"`
}

func main() {
	if addr := os.Getenv(serverEnv); addr != "" {
		if err := serve(addr); err != nil {
			fmt.Fprintln(os.Stderr, "sockfloor server:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.StringVar(&c.Pattern, "pattern", "tap", "tap | quiz | push")
	flag.IntVar(&c.Conns, "conns", 10000, "client connections")
	flag.Float64Var(&c.Rate, "rate", 5, "tap: requests per second per connection")
	flag.IntVar(&c.Size, "size", 200, "quiz, push: bytes pushed to each connection")
	flag.DurationVar(&c.Every, "every", 0, "quiz, push: push interval (default: quiz 3s, push 200ms)")
	flag.DurationVar(&c.Window, "d", 10*time.Second, "measured window")
	flag.Parse()
	r, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockfloor:", err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("pattern=%s conns=%d window=%.1fs ops=%d (%.0f/s) server CPU %.2fs => %.2f µs per op\n",
		r.Pattern, r.Conns, r.WindowS, r.Ops, r.OpsPerS, r.ServerCPU, r.USPerOp)
}

func (c *config) check() error {
	switch c.Pattern {
	case "tap", "quiz", "push":
	default:
		return fmt.Errorf("unknown -pattern %q (tap, quiz, push)", c.Pattern)
	}
	if c.Every == 0 {
		c.Every = 200 * time.Millisecond
		if c.Pattern == "quiz" {
			c.Every = 3 * time.Second
		}
	}
	if c.Conns < 1 || c.Rate <= 0 || c.Size < 1 || c.Size > 1<<20 || c.Every <= 0 || c.Window <= 0 {
		return errors.New("-conns, -rate, -size (≤ 1 MiB), -every and -d must be positive")
	}
	return nil
}

// run starts the server child, connects the clients and measures.
func run(ctx context.Context, c config) (result, error) {
	if err := c.check(); err != nil {
		return result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	addr := ln.Addr().String()
	_ = ln.Close() // the child listens on it
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), serverEnv+"="+addr, "SOCKFLOOR_PATTERN="+c.Pattern,
		"SOCKFLOOR_SIZE="+strconv.Itoa(c.Size), "SOCKFLOOR_EVERY="+c.Every.String())
	cmd.Stderr = os.Stderr
	ready, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	if _, err := io.ReadFull(ready, make([]byte, len("ready\n"))); err != nil {
		return result{}, fmt.Errorf("server did not start: %w", err)
	}
	return measure(ctx, c, addr, cmd.Process.Pid)
}

// measure connects the clients, runs the pattern for c.Window and reads
// the server's CPU before and after.
func measure(ctx context.Context, c config, addr string, pid int) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var received atomic.Int64
	conns := make([]net.Conn, 0, c.Conns)
	defer func() {
		cancel()
		for _, cn := range conns {
			_ = cn.Close()
		}
		wg.Wait()
	}()
	for range c.Conns {
		cn, err := net.Dial("tcp", addr)
		if err != nil {
			return result{}, fmt.Errorf("connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, cn)
	}
	for i, cn := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); client(ctx, c, cn, i, &received) }()
	}
	cpu0, err := bench.ProcessCPU(pid)
	if err != nil {
		return result{}, err
	}
	n0, t0 := received.Load(), time.Now()
	select {
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-time.After(c.Window):
	}
	cpu1, err := bench.ProcessCPU(pid)
	if err != nil {
		return result{}, err
	}
	el := time.Since(t0)
	per := int64(replySize)
	if c.Pattern == "push" {
		per = int64(c.Size)
	}
	r := result{config: c, EveryMS: c.Every.Milliseconds(), WindowS: el.Seconds(), Ops: (received.Load() - n0) / per,
		ServerCPU: (cpu1 - cpu0).Seconds()}
	r.OpsPerS = float64(r.Ops) / el.Seconds()
	if r.Ops > 0 {
		r.USPerOp = float64((cpu1 - cpu0).Microseconds()) / float64(r.Ops)
	}
	return r, nil
}

// client is one connection: it sends taps at c.Rate (tap) or answers each
// push (quiz), and counts the bytes of replies (or pushes) it receives.
// Pushes are filled with 'P' and replies with 'R', so a quiz client tells
// them apart in whatever pieces the stream arrives.
func client(ctx context.Context, c config, cn net.Conn, i int, received *atomic.Int64) {
	if c.Pattern == "tap" {
		go tapper(ctx, cn, time.Duration(float64(time.Second)/c.Rate), i, c.Conns)
	}
	buf := make([]byte, 64<<10)
	req := make([]byte, requestSize)
	pushed := 0 // bytes of the current push read so far (quiz)
	for {
		k, err := cn.Read(buf)
		if err != nil {
			return
		}
		if c.Pattern != "quiz" {
			received.Add(int64(k))
			continue
		}
		replies := 0
		for _, b := range buf[:k] {
			if b == 'R' {
				replies++
				continue
			}
			if pushed++; pushed == c.Size {
				pushed = 0
				if _, err := cn.Write(req); err != nil {
					return
				}
			}
		}
		received.Add(int64(replies))
	}
}

// tapper sends one request every per, spread over the connections.
func tapper(ctx context.Context, cn net.Conn, per time.Duration, i, n int) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(per * time.Duration(i) / time.Duration(n)):
	}
	t := time.NewTicker(per)
	defer t.Stop()
	req := make([]byte, requestSize)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := cn.Write(req); err != nil {
			return
		}
	}
}
