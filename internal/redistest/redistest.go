// Package redistest holds test helpers for roomcast's cluster mode (issue 5):
// the machine's Redis, PostgreSQL and MariaDB (started through
// scripts/deps.sh when one has stopped, and a test FAILS when one is still
// missing), unique key prefixes and databases cleaned up after each test,
// test-owned redis-server processes and a 3-shard Redis Cluster on loopback
// ports, and roomcast binaries run as separate processes.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/auth"
)

// Addresses of the machine's services.
const (
	RedisAddr    = "127.0.0.1:6379"
	PostgresAddr = "127.0.0.1:5432"
	MySQLAddr    = "127.0.0.1:3306"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	servicesOnce sync.Once
	servicesErr  error
)

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// NeedServices makes sure Redis, PostgreSQL and MariaDB answer on their
// loopback ports, running `scripts/deps.sh services` once if one does not;
// the test fails if one is still missing.
func NeedServices(t testing.TB) {
	t.Helper()
	up := func() bool { return reachable(RedisAddr) && reachable(PostgresAddr) && reachable(MySQLAddr) }
	if up() {
		return
	}
	servicesOnce.Do(func() {
		out, err := exec.Command("bash", filepath.Join(RepoRoot(), "scripts", "deps.sh"), "services").CombinedOutput()
		if err != nil {
			servicesErr = fmt.Errorf("scripts/deps.sh services: %v: %s", err, out)
		}
	})
	if !up() {
		t.Fatalf("redis (%s), postgresql (%s) and mariadb (%s) are needed: %v", RedisAddr, PostgresAddr, MySQLAddr, servicesErr)
	}
}

// NewPrefix returns a key prefix no other test uses.
func NewPrefix() string { return "t" + auth.RandomHex(5) + ":" }

// Client returns a client for addrs (default: the machine's Redis), closed
// after the test.
func Client(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	if len(addrs) == 0 {
		NeedServices(t)
		addrs = []string{RedisAddr}
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("redis client %v: %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// Prefix returns a unique key prefix on the Redis behind c and deletes every
// key under it after the test.
func Prefix(t testing.TB, c rueidis.Client) string {
	t.Helper()
	p := NewPrefix()
	t.Cleanup(func() { DeletePrefix(c, p) })
	return p
}

// DeletePrefix removes every key starting with prefix, on every node.
func DeletePrefix(c rueidis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range c.Nodes() {
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				break
			}
			for _, k := range e.Elements {
				n.Do(ctx, n.B().Unlink().Key(k).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Server is a redis-server owned by one test, on its own port and directory,
// with the append-only file fsynced on every write, so a restart (even after
// SIGKILL) keeps everything it acknowledged.
type Server struct {
	t    testing.TB
	Port int
	Dir  string

	mu  sync.Mutex
	cmd *exec.Cmd // guarded by mu
}

// StartServer starts a test-owned redis-server; it is killed after the test.
func StartServer(t testing.TB) *Server {
	t.Helper()
	NeedServices(t)
	s := &Server{t: t, Port: FreePort(t), Dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Start (re)starts the server on the same port and directory and waits until
// it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", filepath.Join(s.Dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for !ready(s.Addr()) { // answering, and done loading its append-only file
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not come up", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready reports whether the Redis at addr answers PING with PONG (while it
// loads its data it answers -LOADING, and commands fail).
func ready(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Kill stops the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// StartCluster starts a 3-shard Redis Cluster with scripts/redis-cluster.sh
// on free loopback ports and returns its seed addresses; it is stopped after
// the test.
func StartCluster(t testing.TB) []string {
	t.Helper()
	NeedServices(t)
	dir := t.TempDir()
	script := filepath.Join(RepoRoot(), "scripts", "redis-cluster.sh")
	ports := make([]string, 3)
	for i := range ports {
		ports[i] = fmt.Sprint(FreePort(t))
	}
	t.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	out, err := exec.Command("bash", append([]string{script, "start", dir}, ports...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("redis-cluster.sh start: %v: %s", err, stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	var seeds string
	for sc.Scan() {
		seeds = strings.TrimSpace(sc.Text())
	}
	return strings.Split(seeds, ",")
}
