def write_recipes_doc(path): raise NotImplementedError
