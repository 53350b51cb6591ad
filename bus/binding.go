package bus

import "fmt"

// bindReply ties a reply to the exact request frame it answers (see
// Reply.RequestDigest). The responder calls it on every reply it signs.
func bindReply(rep *Reply, frame []byte) {
	rep.RequestDigest = FrameDigest(frame)
}

// sentRequest is one signed request a client sent and the digest its
// replies must carry.
type sentRequest struct {
	req    *Request
	frame  []byte
	digest string
	// targets are the hosts the request names; empty for an open broadcast.
	targets []string
	// subject and inbox are where a broadcast went and where its replies
	// come; subject is empty when the request is sent to each target's own
	// subject, each with its own inbox.
	subject, inbox string
}

// checkBinding reports why a verified reply does not answer req, or nil.
func checkBinding(rep *Reply, s *sentRequest) error {
	if rep.RequestID == "" && rep.Agent == "" && rep.Action == "" && rep.Status == StatusRefused && rep.RequestDigest == s.digest {
		// A refusal of bytes the host did not parse (too large): the
		// digest alone binds it to the frame, and it is never a success.
		return nil
	}
	if err := CheckID(rep.RequestID); err != nil {
		return err
	}
	switch {
	case rep.RequestID != s.req.ID:
		return fmt.Errorf("it answers request %s", rep.RequestID)
	case rep.RequestDigest == "":
		return fmt.Errorf("it carries no request digest (is the host's signetd older than this client?)")
	case rep.RequestDigest != s.digest:
		return fmt.Errorf("it answers a different copy of request %s (digest %.12s, want %.12s)", rep.RequestID, rep.RequestDigest, s.digest)
	case rep.Agent != s.req.Agent || rep.Action != s.req.Action:
		return fmt.Errorf("it answers %s.%s, the request was %s.%s", rep.Agent, rep.Action, s.req.Agent, s.req.Action)
	}
	return nil
}
