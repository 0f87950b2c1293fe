// PM2 ecosystem for Odeon: one host process per core on one machine, sharing Redis presence and
// MongoDB room listings.
//
//   cargo build --release -p odeon-host && just plugins
//   REDIS_URL=redis://127.0.0.1:6379 MONGO_URI=mongodb://127.0.0.1:27017/odeon \
//     pm2 start deploy/ecosystem.config.js
//
// Instance i listens on PORT + i (3001, 3002, …): PM2 gives every instance its number in
// NODE_APP_INSTANCE whenever `instances` is set, in fork mode as in cluster mode (pm2's
// God.injectVariables, called for each instance before it is spawned), and the host adds it to
// PORT. So no `increment_var` here: with `increment_var: "PORT"` the offset would count twice.
//
// Environment read when this file is loaded (by `pm2 start`, not by the hosts):
//   ODEON_HOST_BIN       host binary; default ./target/release/odeon-host (relative paths are
//                        from the repository root)
//   ODEON_PLUGINS        plugins directory; default ./target/plugins (`just plugins` fills it)
//   ODEON_PM2_INSTANCES  number of instances; default "max" (one per core)
//   PORT                 first instance's port; default 3001
//   ODEON_BIND           listening address; default 127.0.0.1
//   REDIS_URL, MONGO_URI shared presence and listings; default the usual local servers
//
// Every instance gets the same environment, so ODEON_PUBLIC_ADDRESS is not set here: one value
// cannot name each instance's own port.

const path = require("node:path");

// The repository root: relative paths below (and the hosts' working directory) start here,
// whichever directory pm2 is run from.
const root = path.resolve(__dirname, "..");

module.exports = {
    apps: [
        {
            // `pm2 logs odeon`, `pm2 stop odeon`, …
            name: "odeon",
            // The host binary, not a Node script.
            script: process.env.ODEON_HOST_BIN || "./target/release/odeon-host",
            // A native binary: run it directly, without node.
            interpreter: "none",
            // Working directory of the hosts, and base of the relative paths above.
            cwd: root,
            // One OS process per instance (cluster mode is only for Node.js apps).
            exec_mode: "fork",
            // One instance per core; each one a separate host with its own processId.
            instances: process.env.ODEON_PM2_INSTANCES || "max",
            // Restart a host that exits (crash, or a failed start while Redis/MongoDB are down)...
            autorestart: true,
            // ...but not in a tight loop.
            exp_backoff_restart_delay: 200,
            // On SIGINT a host moves its rooms to the other instances (waiting up to 5 s for one
            // to be up, as in a rolling reload) and closes only what cannot move; give it time.
            // Reload one instance at a time so the others can take its rooms:
            //   PM2_CONCURRENT_ACTIONS=1 pm2 reload deploy/ecosystem.config.js
            kill_timeout: 15000,
            // Not a Node app: no pmx/@pm2/io instrumentation to inject.
            pmx: false,
            // Never read .git metadata of the binary's directory.
            vizion: false,
            env: {
                // Instance 0 listens on PORT, instance i on PORT + NODE_APP_INSTANCE.
                PORT: process.env.PORT || 3001,
                // Loopback, for a reverse proxy on this machine (Colyseus's usual PM2 set-up);
                // ODEON_BIND=0.0.0.0 exposes the instances' ports directly.
                ODEON_BIND: process.env.ODEON_BIND || "127.0.0.1",
                // Redis presence shared by all instances (seats, pub/sub across processes).
                REDIS_URL: process.env.REDIS_URL || "redis://127.0.0.1:6379",
                // MongoDB room listings shared by all instances (collection `roomcaches`).
                MONGO_URI: process.env.MONGO_URI || "mongodb://127.0.0.1:27017/odeon",
                // Room plugins (*.wasm), watched for new versions by every instance.
                ODEON_PLUGINS: path.resolve(root, process.env.ODEON_PLUGINS || "./target/plugins"),
                // Plain log lines in pm2's log files.
                NO_COLOR: "1",
            },
        },
    ],
};
