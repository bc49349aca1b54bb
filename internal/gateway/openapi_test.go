package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"roomcast/internal/app"
	"roomcast/internal/config"
)

const openapiPath = "../../docs/openapi.yaml"

// openAPI reads the documented operations: "METHOD /path".
func openAPI(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(openapiPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid YAML: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("docs/openapi.yaml: openapi %q, want 3.x", doc.OpenAPI)
	}
	ops := map[string]bool{}
	for path, item := range doc.Paths {
		for method, v := range item {
			if method == "parameters" {
				continue
			}
			op, _ := v.(map[string]any)
			if op["responses"] == nil || op["operationId"] == nil {
				t.Errorf("docs/openapi.yaml: %s %s needs an operationId and responses", strings.ToUpper(method), path)
			}
			ops[strings.ToUpper(method)+" "+path] = true
		}
	}
	return ops
}

// registered scans the gateway's sources for the routes it registers with
// a method ("GET /api/rooms"): the route list in gateway.go and the files
// beside it.
func registered(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`\.Handle(?:Func)?\("([A-Z]+) (/[^"]*)"`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if m[1] == "OPTIONS" || strings.HasSuffix(m[2], "/") { // CORS preflight, subtree handlers
				continue
			}
			seen[m[1]+" "+m[2]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Every route the gateway registers is in docs/openapi.yaml, and every
// operation documented there is served (answered by a handler, not by the
// catch-all 404 or a 405).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	documented := openAPI(t)
	routes := registered(t)
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in the gateway's sources: has the route list's style changed?", len(routes))
	}
	for _, r := range routes {
		if !documented[r] {
			method, path, _ := strings.Cut(r, " ")
			t.Errorf("route %s is served but not documented: add it to docs/openapi.yaml under paths:\n  %q:\n    %s:\n      operationId: …\n      summary: …\n      responses: {\"200\": {description: …}, default: {$ref: \"#/components/responses/Error\"}}",
				r, path, strings.ToLower(method))
		}
	}

	cfg := config.Default()
	cfg.HTTP, cfg.RTMP, cfg.Data = "127.0.0.1:0", "", t.TempDir()
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	param := regexp.MustCompile(`\{[a-z]+\}`)
	ops := make([]string, 0, len(documented))
	for op := range documented {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		url := "http://" + a.HTTPAddr() + param.ReplaceAllString(path, "x1")
		var body io.Reader
		if method != "GET" && method != "DELETE" {
			body = strings.NewReader("{}")
		}
		req, _ := http.NewRequest(method, url, body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		unserved := resp.StatusCode == http.StatusMethodNotAllowed ||
			(resp.StatusCode == http.StatusNotFound && (string(raw) == "404 page not found\n" ||
				strings.Contains(string(raw), "no such endpoint") || strings.Contains(string(raw), "use /live/{room}")))
		if unserved {
			t.Errorf("docs/openapi.yaml documents %s, but the server does not serve it (%d %.80s): remove it from the file or register the route", op, resp.StatusCode, raw)
		}
	}
}
