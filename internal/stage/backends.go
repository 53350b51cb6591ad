package stage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/signetbus/signet/plugins/haproxy"
	"github.com/signetbus/signet/plugins/maintenance"
	"github.com/signetbus/signet/plugins/service"
)

// StartBackends brings up what Start brings up for its hosts (the dpkg
// repository and an isolated apt root per host with the first version
// installed, runit per host running the app, one HAProxy over the apps,
// Alertmanager and the health router), but no lab: the responders are
// signetd processes started elsewhere, configured with PluginConfigs. Every
// backend must be real (a sandbox backend lives in-process and cannot be
// configured in a signetd.yaml): StartBackends fails and says which one is
// missing otherwise. Stop stops it; Lab and AppFile stay empty.
func StartBackends(ctx context.Context, o Options) (_ *Stage, err error) {
	if o.Hosts == 0 {
		o.Hosts = 2
	}
	o.noLab = true
	s, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	var sandboxed []string
	for _, b := range []string{BackendPackage, BackendService, BackendHAProxy, BackendMaintenance} {
		if !s.Real(b) {
			sandboxed = append(sandboxed, b+" ("+s.Backends[b]+")")
		}
	}
	if len(sandboxed) > 0 {
		return nil, fmt.Errorf("stage: these backends are not real here, so no signetd can be configured for them: %s", strings.Join(sandboxed, "; "))
	}
	return s, nil
}

// PluginConfigs returns the plugin sections of host id's signetd.yaml for
// the stage's real backends, by plugin name: package (the host's isolated
// apt root), service (runit, the host's service directory), haproxy (the
// stage's admin socket), maintenance (Alertmanager, matcher host={{identity}})
// and health.
func (s *Stage) PluginConfigs(id string) (map[string]json.RawMessage, error) {
	h := s.Host(id)
	if h == nil {
		return nil, fmt.Errorf("%w: %s", errNoSuchHost, id)
	}
	pkg, ok := s.pkgCfgs[id]
	if !ok {
		return nil, fmt.Errorf("stage: %s: no package config (the package backend is not real)", id)
	}
	out := map[string]json.RawMessage{BackendPackage: pkg, BackendHealth: json.RawMessage("{}")}
	var err error
	if out[BackendService], err = json.Marshal(service.Config{Backend: service.BackendRunit, ServiceDir: h.ServiceDir, Services: []string{s.App}}); err != nil {
		return nil, err
	}
	if out[BackendHAProxy], err = json.Marshal(haproxy.Config{Instances: []haproxy.InstanceConfig{{Name: "main", Socket: "unix:" + s.HAProxySocket}}}); err != nil {
		return nil, err
	}
	if out[BackendMaintenance], err = json.Marshal(maintenance.Config{Backends: []maintenance.BackendConfig{{Alertmanager: &maintenance.AlertmanagerConfig{
		URL: s.AlertmanagerURL, Matchers: []maintenance.MatcherConfig{{Name: "host", Value: "{{identity}}"}}}}}}); err != nil {
		return nil, err
	}
	return out, nil
}
