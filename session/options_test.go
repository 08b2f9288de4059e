package session

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	c := DefaultConfig().Redis
	tests := []struct {
		name             string
		url              string
		addr, user, pass string
		db               int
		tls, unix        bool
	}{
		{name: "plain", url: "redis://10.0.0.1:6380/2", addr: "10.0.0.1:6380", db: 2},
		{name: "auth_tls", url: "rediss://bff:s3cret@redis.example.com:6379/0", addr: "redis.example.com:6379", user: "bff", pass: "s3cret", tls: true},
		{name: "unix", url: "unix:///run/redis.sock?db=1", addr: "/run/redis.sock", db: 1, unix: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := c
			c.URL = tc.url
			o, err := redisOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Addrs) != 1 || o.Addrs[0] != tc.addr || o.DB != tc.db || o.Username != tc.user || o.Password != tc.pass ||
				(o.TLSConfig != nil) != tc.tls || (o.Dialer != nil) != tc.unix {
				t.Errorf("options = %+v", o)
			}
			if o.DialTimeout != time.Second || o.ReadTimeout != 500*time.Millisecond || o.WriteTimeout != 500*time.Millisecond ||
				o.PoolSize != 32 || o.PoolTimeout != 500*time.Millisecond || !o.ContextTimeoutEnabled {
				t.Errorf("timeouts/pool = %v %v %v %d %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.ContextTimeoutEnabled)
			}
		})
	}
	t.Run("sentinel_and_cluster", func(t *testing.T) {
		t.Parallel()
		c := c
		c.URL = "redis://u:pw@s1:26379/3?master_name=mymaster&addr=s2:26379&addr=s3:26379"
		o, err := redisOptions(c)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(o.Addrs, ",") != "s1:26379,s2:26379,s3:26379" || o.MasterName != "mymaster" || o.DB != 3 ||
			o.SentinelPassword != "pw" || o.Password != "pw" {
			t.Errorf("sentinel options = %+v", o)
		}
		// Sentinels with credentials of their own, or none.
		for url, want := range map[string][2]string{
			"redis://u:pw@s1:26379/3?master_name=m&sentinel_password=":                        {"", ""},
			"redis://u:pw@s1:26379/3?master_name=m&sentinel_username=su&sentinel_password=sp": {"su", "sp"},
		} {
			c.URL = url
			if o, err = redisOptions(c); err != nil || o.SentinelUsername != want[0] || o.SentinelPassword != want[1] || o.Password != "pw" {
				t.Errorf("%s: sentinel options = %+v, %v", url, o, err)
			}
		}
		c.URL = "redis://n1:7000?addr=n2:7001&addr=n3:7002"
		if o, err = redisOptions(c); err != nil || len(o.Addrs) != 3 || o.MasterName != "" {
			t.Errorf("cluster options = %+v, %v", o, err)
		}
		c.URL = "redis://n1:7000?addr=nope"
		if _, err := redisOptions(c); err == nil {
			t.Error("a bad addr was accepted")
		}
	})
	// Which go-redis client each URL form builds, and how it verifies TLS:
	// the URL's first host names only its own certificate.
	topologies := []struct {
		name       string
		url        string
		client     string // the concrete go-redis client type
		serverName string // TLS server name, "-" without TLS
	}{
		{name: "single", url: "redis://h:6379/1", client: "*redis.Client", serverName: "-"},
		{name: "single_tls_names_its_host", url: "rediss://h.example:6379/1", client: "*redis.Client", serverName: "h.example"},
		{name: "sentinel", url: "redis://s1:26379/1?master_name=m&addr=s2:26379", client: "*redis.Client", serverName: "-"},
		{name: "sentinel_tls_each_host_its_name", url: "rediss://s1:26379/1?master_name=m&addr=s2:26379", client: "*redis.Client"},
		{name: "cluster", url: "redis://n1:7000?addr=n2:7001", client: "*redis.ClusterClient", serverName: "-"},
		{name: "cluster_tls_each_host_its_name", url: "rediss://n1:7000?addr=n2:7001", client: "*redis.ClusterClient"},
		{name: "cluster_one_seed", url: "redis://cfg.example:6379?cluster=true", client: "*redis.ClusterClient", serverName: "-"},
		{name: "cluster_false_is_single", url: "redis://h:6379?cluster=false", client: "*redis.Client", serverName: "-"},
	}
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := c
			c.URL = tc.url
			o, err := redisOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			client := redis.NewUniversalClient(o)
			defer client.Close()
			if got := fmt.Sprintf("%T", client); got != tc.client {
				t.Errorf("client %s, want %s", got, tc.client)
			}
			got := "-"
			if o.TLSConfig != nil {
				got = o.TLSConfig.ServerName
			}
			if got != tc.serverName {
				t.Errorf("TLS server name %q, want %q", got, tc.serverName)
			}
		})
	}
	t.Run("bad_url_hides_password", func(t *testing.T) {
		t.Parallel()
		c := c
		c.URL = "redis://u:hunter2@h:notaport"
		if _, err := redisOptions(c); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v", err)
		}
	})
}
