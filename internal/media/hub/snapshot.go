package hub

// KeyFrame returns the stream's current video sequence header and the
// latest video key frame of the GOP cache — what a decoder needs to draw
// one picture (thumbnails, issue 15). ok is false when there is no video
// key frame in the ring yet (or the stream is audio-only). The frames are
// shared and read-only.
func (s *Stream) KeyFrame() (cfg, key *Frame, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.gopOK || s.gop < s.tail || s.gop >= s.head || s.vcfg == nil {
		return nil, nil, false
	}
	f := s.at(s.gop)
	if f == nil || f.Kind != KindVideo {
		return nil, nil, false
	}
	return s.vcfg, f, true
}
