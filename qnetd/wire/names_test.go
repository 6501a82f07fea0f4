package wire

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNames pins the text of every enum's String(): logs, the status JSON,
// the stories in testdata and the real-peer scripts read these words, so
// they must not change when the code that produces them does. A value
// outside an enum shows as stringer writes it, Type(n): none reaches a log
// or a page (the decoder refuses out-of-range bytes and unknown message
// types; an unknown algorithm is refused before it is logged).
func TestNames(t *testing.T) {
	cases := []struct {
		v    fmt.Stringer
		want string
	}{
		{MsgPreinit, "Preinit"},
		{MsgPreinitReply, "Preinit reply"},
		{MsgStartTLS, "StartTLS"},
		{MsgInit, "Init"},
		{MsgInitReply, "Init reply"},
		{MsgServerError, "Server error"},
		{MsgSetOption, "Set option"},
		{MsgSetOptionReply, "Set option reply"},
		{MsgEchoRequest, "Echo request"},
		{MsgEchoReply, "Echo reply"},
		{MsgNodeList, "Node list"},
		{MsgNodeListReply, "Node list reply"},
		{MsgAskForVote, "Ask for vote"},
		{MsgAskForVoteReply, "Ask for vote reply"},
		{MsgVoteInfo, "Vote info"},
		{MsgVoteInfoReply, "Vote info reply"},
		{MsgHeuristicsChange, "Heuristics change"},
		{MsgHeuristicsChangeReply, "Heuristics change reply"},
		{MsgType(18), "MsgType(18)"},

		{TLSUnsupported, "Unsupported"},
		{TLSSupportedOn, "Supported"},
		{TLSRequired, "Required"},
		{TLSSupported(3), "TLSSupported(3)"},

		{ErrNoError, "no error"},
		{ErrUnsupportedNeededMessage, "unsupported needed message"},
		{ErrUnsupportedNeededOption, "unsupported needed option"},
		{ErrTLSRequired, "TLS required"},
		{ErrUnsupportedMessage, "unsupported message"},
		{ErrMessageTooLong, "message too long"},
		{ErrPreinitRequired, "preinit required"},
		{ErrDoesntContainRequiredOption, "doesn't contain required option"},
		{ErrUnexpectedMessage, "unexpected message"},
		{ErrErrorDecodingMsg, "error decoding message"},
		{ErrInternalError, "internal error"},
		{ErrInitRequired, "init required"},
		{ErrUnsupportedDecisionAlgorithm, "unsupported decision algorithm"},
		{ErrInvalidHeartbeatInterval, "invalid heartbeat interval"},
		{ErrUnsupportedDecisionAlgorithmMsg, "unsupported decision algorithm message"},
		{ErrTieBreakerDiffersFromOtherNodes, "tie-breaker differs from other nodes"},
		{ErrAlgorithmDiffersFromOtherNodes, "algorithm differs from other nodes"},
		{ErrDuplicateNodeID, "duplicate node id"},
		{ErrInvalidConfigNodeList, "invalid config node list"},
		{ErrInvalidMembershipNodeList, "invalid membership node list"},
		{ErrorCode(20), "ErrorCode(20)"},

		{AlgoTest, "Test"},
		{AlgoFFSplit, "Fifty-Fifty split"},
		{Algo2NodeLMS, "2 Node LMS"},
		{AlgoLMS, "LMS"},
		{Algorithm(4), "Algorithm(4)"},

		{ListInitialConfig, "initial config"},
		{ListChangedConfig, "changed config"},
		{ListMembership, "membership"},
		{ListQuorum, "quorum"},
		{NodeListType(4), "NodeListType(4)"},

		{VoteUndefined, "Undefined"},
		{VoteACK, "ACK"},
		{VoteNACK, "NACK"},
		{VoteAskLater, "Ask later"},
		{VoteWaitForReply, "Wait for reply"},
		{VoteNoChange, "No change"},
		{Vote(6), "Vote(6)"},

		{HeuristicsUndefined, "Undefined"},
		{HeuristicsPass, "Pass"},
		{HeuristicsFail, "Fail"},
		{Heuristics(3), "Heuristics(3)"},

		{TieBreaker{Mode: TieBreakerLowest}, "Node with lowest node ID"},
		{TieBreaker{Mode: TieBreakerHighest}, "Node with highest node ID"},
		{TieBreaker{Mode: TieBreakerNodeID, NodeID: 7}, "Node with node ID 7"},
		{TieBreaker{Mode: 4}, "tie-breaker mode 4"},

		{RingID{NodeID: 0x1a, Seq: 0x2b}, "1a.2b"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, c.v.String(), "%T(%#v)", c.v, c.v)
	}
}
