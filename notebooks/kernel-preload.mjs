// Preloaded into the tslab kernel (NODE_OPTIONS=--import) so that notebooks can
// `import { ... } from 'clipfreeze'`. tslab compiles every cell to CommonJS, and a CommonJS
// require() of the library would load its TypeScript as CommonJS, which fails on ESM-only
// dependencies. Here the library loads once as ESM through tsx, and require('clipfreeze')
// returns that module.
import Module from 'node:module';
import { register } from 'tsx/esm/api';

register();
const library = await import('clipfreeze');

const load = Module._load;
Module._load = function loadWithLibrary(request, parent, isMain) {
  if (request === 'clipfreeze') return library;
  return load.call(this, request, parent, isMain);
};
