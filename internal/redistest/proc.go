package redistest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/roomcast once per test binary run and returns its path.
// It lives in a temporary directory named after the repository, so runs
// replace it instead of piling up copies.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		sum := sha1.Sum([]byte(RepoRoot()))
		dir := filepath.Join(os.TempDir(), "roomcast-test-"+hex.EncodeToString(sum[:4]))
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		tmp := filepath.Join(dir, fmt.Sprintf("roomcast.%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tmp, "./cmd/roomcast")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/roomcast: %v: %s", err, out)
			return
		}
		binPath = filepath.Join(dir, "roomcast")
		buildErr = os.Rename(tmp, binPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Node is one roomcast process started for a test.
type Node struct {
	t    testing.TB
	URL  string // http://127.0.0.1:PORT
	Addr string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd     // guarded by mu
	done chan struct{} // closed when the process has exited
}

// StartNode runs `roomcast serve --http 127.0.0.1:PORT args...` and waits
// until /readyz answers 200. The node is stopped after the test, and its log
// is printed if the test failed.
func StartNode(t testing.TB, bin string, args ...string) *Node {
	t.Helper()
	port := FreePort(t)
	n := &Node{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(t.TempDir(), "node.log"), done: make(chan struct{})}
	n.URL = "http://" + n.Addr
	logf, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--http", n.Addr}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start roomcast: %v", err)
	}
	n.cmd = cmd
	go func() { _ = cmd.Wait(); logf.Close(); close(n.done) }() // ends with the process, which cleanup ends
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			raw, _ := os.ReadFile(n.log)
			if len(raw) > 6000 {
				raw = raw[len(raw)-6000:]
			}
			t.Logf("log of node %s:\n%s", n.Addr, raw)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				client.CloseIdleConnections()
				return n
			}
		}
		select {
		case <-n.done:
			raw, _ := os.ReadFile(n.log)
			t.Fatalf("roomcast %v exited early:\n%s", args, raw)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("roomcast on %s not ready after 20s", n.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RSS is the node process's resident memory in bytes (Linux /proc), or 0
// once it has exited.
func (n *Node) RSS() int64 {
	n.mu.Lock()
	pid := n.cmd.Process.Pid
	n.mu.Unlock()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Kill ends the node at once (SIGKILL), as a crash would.
func (n *Node) Kill() { n.signal(syscall.SIGKILL) }

// Stop asks the node to shut down gracefully (SIGTERM), killing it after
// 10 seconds.
func (n *Node) Stop() { n.signal(syscall.SIGTERM) }

func (n *Node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	select {
	case <-n.done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-n.done
	}
}
