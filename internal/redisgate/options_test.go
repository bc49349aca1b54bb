package redisgate

import (
	"reflect"
	"testing"
)

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		spec  string
		addrs []string
		db    int
		bad   bool
	}{
		{spec: "redis://127.0.0.1:6379/3", addrs: []string{"127.0.0.1:6379"}, db: 3},
		{spec: "10.0.0.1:7001, 10.0.0.2:7002,10.0.0.3:7003", addrs: []string{"10.0.0.1:7001", "10.0.0.2:7002", "10.0.0.3:7003"}},
		{spec: "redis://a:7001,redis://b:7002", addrs: []string{"a:7001", "b:7002"}},
		{spec: "localhost", addrs: []string{"localhost:6379"}},
		{spec: "redis://a:1/2,redis://b:2/2", bad: true},
		{spec: "http://a:1", bad: true},
		{spec: " , ", bad: true},
	} {
		opt, err := Options(c.spec)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v", c.spec, err)
			continue
		}
		if c.bad {
			continue
		}
		if !reflect.DeepEqual(opt.InitAddress, c.addrs) || opt.SelectDB != c.db || !opt.DisableRetry || !opt.DisableCache {
			t.Errorf("%q: %v db %d", c.spec, opt.InitAddress, opt.SelectDB)
		}
	}
}
