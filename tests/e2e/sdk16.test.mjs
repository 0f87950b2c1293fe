// colyseus.js 0.16.22 end-to-end: the shared echo-room suite against odeon-host --protocol 0.16.
import { echoSuite } from "./echo-suite.mjs";
import { SDK16 } from "./sdks.mjs";

echoSuite(SDK16);
