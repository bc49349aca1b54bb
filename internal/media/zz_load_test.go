package media_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"roomcast/internal/media"
	"roomcast/internal/media/internal/testenv"
)

func TestZZLoadServe(t *testing.T) {
	if os.Getenv("ROOMCAST_LOAD") == "" {
		t.Skip()
	}
	d, _ := strconv.Atoi(os.Getenv("ROOMCAST_LOAD"))
	bd, _ := time.ParseDuration(os.Getenv("ROOMCAST_BATCH"))
	rooms := testenv.NewRooms("key1", "room1")
	srv, err := media.New(media.Config{RTMP: "127.0.0.1:19350", GOPCache: true, BatchDelay: bd}, rooms, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(context.Background())
	mux := http.NewServeMux()
	mux.Handle("/live/", srv.HTTPHandler())
	hs := &http.Server{Addr: "127.0.0.1:18080", Handler: mux}
	go hs.ListenAndServe()
	testenv.Start(t, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", "/tmp/mt/load.flv", "-c", "copy", "-f", "flv", "rtmp://127.0.0.1:19350/live/key1")
	for i := 0; i < d; i++ {
		time.Sleep(time.Second)
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		b, _ := os.ReadFile("/proc/self/statm")
		var size, res int
		fmt.Sscan(string(b), &size, &res)
		fmt.Printf("T %d cpu_ms=%d rss_mb=%d\n", time.Now().UnixMilli(), cpu.Milliseconds(), res*4096>>20)
	}
	hs.Close()
	srv.Close()
}
