// Package deploy_test checks the packaging files: the Dockerfile (built
// when a Docker engine is available), docker-compose.yml, the systemd unit
// and the Grafana dashboard.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"roomcast/internal/config"
	"roomcast/internal/redistest"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(redistest.RepoRoot(), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serveFlags checks that args (after "serve") are flags serve accepts.
func serveFlags(t *testing.T, where string, args []string, env map[string]string) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: command %q does not start with serve", where, args)
		return
	}
	if _, err := config.Load("roomcast serve", args[1:], func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Errorf("%s: serve would refuse %q: %v", where, args, err)
	}
}

// The Dockerfile is multi-stage, builds a static binary, runs as a
// non-root user with a data volume and checks /readyz.
func TestDockerfileShape(t *testing.T) {
	df := read(t, "Dockerfile")
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "USER 10001", `VOLUME ["/data"]`, "HEALTHCHECK", "/readyz", "EXPOSE 8080 1935", "ffmpeg"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a build and a runtime stage", n)
	}
}

// dockerEngine reports whether a Docker engine answers; the build tests
// skip, saying so, when none does (e.g. this project's test machines).
func dockerEngine(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("SKIPPED: no docker command; the image is built in CI where Docker runs (Dockerfile checked by TestDockerfileShape)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: no Docker engine (%s); the image is built in CI where Docker runs (Dockerfile checked by TestDockerfileShape)", strings.TrimSpace(lastLine(string(out))))
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// The image builds, and its binary runs.
func TestDockerImageBuilds(t *testing.T) {
	dockerEngine(t)
	tag := "roomcast-test:" + strings.ToLower(t.Name())
	build := exec.Command("docker", "build", "-t", tag, ".")
	build.Dir = redistest.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	if out, err := exec.Command("docker", "run", "--rm", tag, "version").CombinedOutput(); err != nil || !strings.Contains(string(out), "roomcast") {
		t.Fatalf("docker run %s version: %v %s", tag, err, out)
	}
	cfg := exec.Command("docker", "compose", "config", "-q")
	cfg.Dir = redistest.RepoRoot()
	if out, err := cfg.CombinedOutput(); err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}

// docker-compose.yml: three roomcast nodes on Redis and PostgreSQL, each
// with flags serve accepts.
func TestComposeFile(t *testing.T) {
	var doc struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Build       string            `yaml:"build"`
			DependsOn   map[string]any    `yaml:"depends_on"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "docker-compose.yml")), &doc); err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for name, s := range doc.Services {
		if s.Build == "" {
			continue
		}
		nodes++
		serveFlags(t, "docker-compose.yml "+name, s.Command, s.Environment)
		if !strings.HasPrefix(s.Environment["ROOMCAST_REDIS"], "redis://redis:") || !strings.HasPrefix(s.Environment["ROOMCAST_DB"], "postgres://") {
			t.Errorf("%s does not use the shared Redis and PostgreSQL: %v", name, s.Environment)
		}
		if s.DependsOn["redis"] == nil || s.DependsOn["postgres"] == nil {
			t.Errorf("%s does not wait for redis and postgres", name)
		}
	}
	if nodes != 3 {
		t.Errorf("%d roomcast nodes, want 3", nodes)
	}
	for _, svc := range []string{"redis", "postgres"} {
		if _, ok := doc.Services[svc]; !ok {
			t.Errorf("no %s service", svc)
		}
	}
}

// The systemd unit has the hardening options, verifies with
// systemd-analyze, and its ExecStart flags are serve's.
func TestSystemdUnit(t *testing.T) {
	unit := read(t, "deploy/roomcast.service")
	for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
		"DynamicUser=yes", "StateDirectory=roomcast", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies=", "SystemCallFilter=@system-service", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
		"ProtectControlGroups=yes", "RestrictNamespaces=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes", "RestrictSUIDSGID=yes",
		"LimitNOFILE=", "Restart=on-failure"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("deploy/roomcast.service lacks %s", want)
		}
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("no ExecStart")
	}
	serveFlags(t, "deploy/roomcast.service ExecStart", strings.Fields(m[2]), nil)

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found (Debian package systemd; scripts/deps.sh installs it)")
	}
	bin := redistest.Binary(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "roomcast.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, m[1], bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", p).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Every metric the Grafana dashboard queries exists in roomcast's code.
func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(read(t, "deploy/grafana-dashboard.json")), &dash); err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	err := filepath.Walk(filepath.Join(redistest.RepoRoot(), "internal"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			src.Write(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`roomcast_[a-z0-9_]+`)
	if len(dash.Panels) < 10 {
		t.Errorf("%d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range names.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !strings.Contains(src.String(), `"`+base+`"`) {
					t.Errorf("panel %q queries %s, which roomcast does not export", p.Title, n)
				}
			}
		}
	}
}
