// Validate an OpenAPI document with @apidevtools/swagger-parser (installed project-locally
// by .ci/run: npm install --prefix build/npm). Usage: node validate.js MODULES_DIR FILE
// Prints "valid" and exits 0, or prints the validator's message and exits 1.
"use strict";
const path = require("path");
const SwaggerParser = require(path.join(process.argv[2], "@apidevtools/swagger-parser"));

SwaggerParser.validate(process.argv[3])
  .then(() => { console.log("valid"); })
  .catch((err) => { console.log(String(err && err.message || err)); process.exit(1); });
