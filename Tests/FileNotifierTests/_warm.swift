import Testing; 
