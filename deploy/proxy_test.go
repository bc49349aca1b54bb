package deploy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/app"
	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// nginxSnippet is the server block of docs/operators.md, as documented.
func nginxSnippet(t *testing.T) string {
	t.Helper()
	doc := read(t, "docs/operators.md")
	_, rest, ok := strings.Cut(doc, "<!-- nginx-snippet-start -->\n```nginx\n")
	snippet, _, ok2 := strings.Cut(rest, "```\n<!-- nginx-snippet-end -->")
	if !ok || !ok2 {
		t.Fatal("docs/operators.md has no nginx snippet between the markers")
	}
	return snippet
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	crt, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return crt, key
}

// The operator's guide's nginx snippet, run by Debian's nginx on free
// ports in front of roomcast with TLS: the API, a WebSocket and an endless
// HTTP-FLV response all work through it, and /metrics stays inside.
func TestNginxSnippet(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			t.Fatal("nginx not found (Debian package nginx; scripts/deps.sh installs it)")
		}
		nginx = "/usr/sbin/nginx"
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not found (scripts/deps.sh installs it)")
	}

	cfg := config.Default()
	cfg.HTTP, cfg.RTMP, cfg.Data = "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), t.TempDir()
	cfg.Secret, cfg.AdminKey = "proxy-test-secret-0123456789", "proxy-test-admin"
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())

	dir, err := os.MkdirTemp("", "roomcast-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // nginx's workers run as nobody when the test is root
	crt, key := selfSigned(t, dir)
	port := redistest.FreePort(t)
	conf := nginxSnippet(t)
	for old, repl := range map[string]string{
		"server 127.0.0.1:8080;":        "server " + a.HTTPAddr() + ";",
		"listen 443 ssl;":               fmt.Sprintf("listen 127.0.0.1:%d ssl;", port),
		"/etc/ssl/live.example.com.crt": crt,
		"/etc/ssl/live.example.com.key": key,
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("the snippet no longer has %q", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		os.MkdirAll(filepath.Join(dir, d), 0o777)
		os.Chmod(filepath.Join(dir, d), 0o777)
	}
	main := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log stderr warn;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, conf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath, "-g", "daemon off;")
	var nginxErr strings.Builder
	cmd.Stderr = &nginxErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx: %s", nginxErr.String())
		}
	}()
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	tlsCfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's own self-signed certificate
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()
	testutil.WaitFor(t, "nginx answering", 20*time.Second, func() bool {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// The API, through the proxy.
	tok, _ := a.Signer.Sign(auth.Claims{Sub: "pia", Role: auth.RoleAnchor}, time.Hour)
	req, _ := http.NewRequest("POST", base+"/api/rooms", strings.NewReader(`{"title":"Proxied","id":"px"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var room struct {
		Key string `json:"stream_key"`
	}
	json.NewDecoder(resp.Body).Decode(&room)
	resp.Body.Close()
	if resp.StatusCode != 201 || room.Key == "" {
		t.Fatalf("create a room through nginx: %d", resp.StatusCode)
	}
	if resp, err := client.Get(base + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Errorf("/metrics through nginx: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// A WebSocket through the proxy, with the browser's Origin: a message sent
	// over HTTP arrives on it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws?room=px", &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		t.Fatalf("WebSocket through nginx: %v", err)
	}
	defer ws.CloseNow()
	req, _ = http.NewRequest("POST", base+"/api/rooms/px/messages", strings.NewReader(`{"kind":"chat","text":"through the proxy"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("send through nginx: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading the WebSocket through nginx: %v", err)
		}
		if strings.Contains(string(msg), "through the proxy") {
			break
		}
	}

	// HTTP-FLV through the proxy: the endless response streams, unbuffered.
	pub := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
		"-f", "flv", "rtmp://"+cfg.RTMP+"/live/"+room.Key)
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pub.Process.Kill(); pub.Wait() }()
	testutil.WaitFor(t, "the room live", 30*time.Second, func() bool { _, ok := a.Media.StreamInfo("px"); return ok })
	flv, err := client.Get(base + "/live/px.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer flv.Body.Close()
	if flv.StatusCode != 200 {
		t.Fatalf("FLV through nginx: %d", flv.StatusCode)
	}
	br := bufio.NewReader(flv.Body)
	head := make([]byte, 3)
	if _, err := io.ReadFull(br, head); err != nil || string(head) != "FLV" {
		t.Fatalf("FLV through nginx starts %q: %v", head, err)
	}
	// Bytes keep coming while the stream runs: 100 KB of a ~25 fps stream
	// take seconds, which a buffering proxy would hold back.
	n, err := io.CopyN(io.Discard, br, 100<<10)
	if err != nil {
		t.Fatalf("FLV through nginx stopped after %d bytes: %v", n, err)
	}
}
