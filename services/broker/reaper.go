package broker

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// reaper makes up for a gap in kfake's classic consumer groups: a member
// that dies while the broker is still answering its join or sync request
// never gets a session timer, so it stays in the stable group forever and
// its partitions go unread. The reaper watches every group request, and a
// member of a stable group that has sent nothing for longer than its
// session timeout is made to leave the group, which rebalances it, as a
// real broker's session timer would.
type reaper struct {
	log  *zap.Logger
	mu   sync.Mutex
	seen map[memberKey]memberSeen
	// session is the latest session timeout a join of each group asked
	// for: a first join carries no member ID yet, so it stands for the
	// member the broker then creates.
	session map[string]time.Duration
}

type memberKey struct{ group, member string }

type memberSeen struct {
	last    time.Time
	session time.Duration
}

// reaperGrace is added to a member's session timeout before it is reaped,
// so the broker's own timer, when it works, always acts first.
const reaperGrace = 2 * time.Second

func newReaper(log *zap.Logger) *reaper {
	return &reaper{log: log, seen: map[memberKey]memberSeen{}, session: map[string]time.Duration{}}
}

// watch installs the request observers on the cluster.
func (r *reaper) watch(c *kfake.Cluster) {
	observe := func(key int16) {
		c.ControlKey(key, func(req kmsg.Request) (kmsg.Response, error, bool) {
			r.saw(req)
			return nil, nil, false
		})
	}
	for _, k := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.LeaveGroup} {
		observe(int16(k))
	}
}

func (r *reaper) saw(req kmsg.Request) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	touch := func(group, member string, session time.Duration) {
		if member == "" {
			return
		}
		k := memberKey{group, member}
		s := r.seen[k]
		s.last = now
		if session > 0 {
			s.session = session
		}
		r.seen[k] = s
	}
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		d := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
		r.session[req.Group] = d
		touch(req.Group, req.MemberID, d)
	case *kmsg.SyncGroupRequest:
		touch(req.Group, req.MemberID, 0)
	case *kmsg.HeartbeatRequest:
		touch(req.Group, req.MemberID, 0)
	case *kmsg.OffsetCommitRequest:
		touch(req.Group, req.MemberID, 0)
	case *kmsg.LeaveGroupRequest:
		delete(r.seen, memberKey{req.Group, req.MemberID})
		for _, m := range req.Members {
			delete(r.seen, memberKey{req.Group, m.MemberID})
		}
	}
}

// run checks once a second until ctx ends, through client: the broker's
// own connection to its nodes.
func (r *reaper) run(ctx context.Context, client *kafka.Client) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.sweep(ctx, client, time.Now())
	}
}

// sweep makes every member of a stable group that has been silent past its
// session timeout leave the group. Members of a group in any other state
// may be waiting on a rebalance, not dead. A member the reaper has never
// seen a request from (one that died before it learned its member ID)
// counts as silent from the first sweep that finds it.
func (r *reaper) sweep(ctx context.Context, client *kafka.Client, now time.Time) {
	list, err := client.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil || len(list.Groups) == 0 {
		return
	}
	var ids []string
	for _, g := range list.Groups {
		ids = append(ids, g.GroupID)
	}
	res, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: ids})
	if err != nil {
		r.log.Warn("describe groups", zap.Error(err))
		return
	}
	for _, g := range res.Groups {
		if g.Error != nil || g.GroupState != "Stable" {
			continue
		}
		var leave []kafka.LeaveGroupRequestMember
		in := map[string]bool{}
		r.mu.Lock()
		for k := range r.seen {
			if k.group == g.GroupID {
				in[k.member] = false
			}
		}
		for _, m := range g.Members {
			in[m.MemberID] = true
			k := memberKey{g.GroupID, m.MemberID}
			s, ok := r.seen[k]
			if !ok {
				r.seen[k] = memberSeen{last: now}
				continue
			}
			session := s.session
			if session == 0 {
				session = r.session[g.GroupID]
			}
			if session > 0 && now.Sub(s.last) > session+reaperGrace {
				leave = append(leave, kafka.LeaveGroupRequestMember{ID: m.MemberID})
			}
		}
		for member, present := range in {
			if !present {
				delete(r.seen, memberKey{g.GroupID, member})
			}
		}
		r.mu.Unlock()
		if len(leave) == 0 {
			continue
		}
		if _, err := client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: g.GroupID, Members: leave}); err != nil {
			r.log.Warn("remove silent group members", zap.String("group", g.GroupID), zap.Error(err))
			continue
		}
		for _, m := range leave {
			r.forget(g.GroupID, m.ID)
			r.log.Info("removed a group member silent past its session timeout", zap.String("group", g.GroupID), zap.String("member", m.ID))
		}
	}
}

func (r *reaper) forget(group, member string) {
	r.mu.Lock()
	delete(r.seen, memberKey{group, member})
	r.mu.Unlock()
}
