// @colyseus/sdk 0.17.43 end-to-end: the shared echo-room suite against odeon-host --protocol 0.17.
import { echoSuite } from "./echo-suite.mjs";
import { SDK17 } from "./sdks.mjs";

echoSuite(SDK17);
