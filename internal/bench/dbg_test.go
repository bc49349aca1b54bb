package bench

import "testing"

func TestDbg(t *testing.T) {
	for i := 0; i < 8; i++ {
		f := newFakeServer(t, nil)
		rep, err := runBench(t, f, "ws", "--conns", "3", "--ramp", "0",
			"--duration", "300ms", "--drain", "100ms", "--send-rate", "20", "--token", "t")
		if err != nil {
			t.Logf("%v send %+v delivery %+v seq %+v", err, rep.Send, rep.Delivery, rep.Seq)
		}
	}
}
