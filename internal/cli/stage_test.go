package cli

// The demo tests start real runit services, which run the demo app as
// `BINARY demo app CONFIG`: stagetest makes this test binary answer that.
import _ "github.com/signetbus/signet/internal/stage/stagetest"
